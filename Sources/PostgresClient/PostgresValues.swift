import CivilTime
import Foundation

/// A Swift value that can be sent as a query parameter, in PostgreSQL's text format.
/// `nil` (through `Optional`) is SQL NULL. Values never become part of the SQL text.
public protocol PostgresEncodable: Sendable {
    /// The text form PostgreSQL parses for this value, or nil for NULL.
    var postgresText: String? { get }
}

/// A Swift value that can be read from a column's text form.
public protocol PostgresDecodable {
    init(postgresText: String) throws(PostgresError)
    /// The same from the text's UTF-8 bytes as the result holds them; by default through
    /// a `String`. Types read by the hundred thousand (uuids, timestamps, integers) parse
    /// the bytes without making one.
    init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError)
}

extension PostgresDecodable {
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
    }
}

/// An integer written in decimal (an optional `-`), from bytes; nil when malformed or
/// out of range.
private func decimalInteger(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
    guard !bytes.isEmpty else { return nil }
    let negative = bytes[0] == UInt8(ascii: "-")
    let digits = negative ? UnsafeBufferPointer(rebasing: bytes.dropFirst()) : bytes
    guard !digits.isEmpty, digits.count <= 19 else { return nil }
    // Accumulated with the number's sign, so the most negative value does not overflow.
    var value: Int64 = 0
    for byte in digits {
        guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
        let digit = Int64(byte - UInt8(ascii: "0"))
        let (times, overflow) = value.multipliedReportingOverflow(by: 10)
        let (next, overflowAdding) = negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
        guard !overflow, !overflowAdding else { return nil }
        value = next
    }
    return value
}

/// JSON held as its text, for `json`/`jsonb` parameters and columns.
public struct PostgresJSON: Sendable, Hashable, PostgresEncodable, PostgresDecodable {
    public let text: String

    public init(text: String) {
        self.text = text
    }

    /// Encodes `value` with `JSONEncoder` (sorted keys, so equal values give equal text).
    public init(encoding value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        self.text = String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public init(postgresText: String) { self.text = postgresText }
    public var postgresText: String? { text }

    /// Decodes the JSON into `type`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresText: String? { self?.postgresText }
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self }
    public init(postgresText: String) { self = postgresText }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self ? "t" : "f" }
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw .decodingFailure(as: "Bool")
        }
    }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int(postgresText) else { throw .decodingFailure(as: "Int") }
        self = value
    }
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        guard let value = decimalInteger(postgresBytes) else { throw .decodingFailure(as: "Int") }
        self = Int(value)
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int64(postgresText) else { throw .decodingFailure(as: "Int64") }
        self = value
    }
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        guard let value = decimalInteger(postgresBytes) else { throw .decodingFailure(as: "Int64") }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int32(postgresText) else { throw .decodingFailure(as: "Int32") }
        self = value
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { lowercasedText }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = UUID(text: postgresText) else { throw .decodingFailure(as: "UUID") }
        self = value
    }
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        guard let value = UUID(utf8: postgresBytes) else { throw .decodingFailure(as: "UUID") }
        self = value
    }
}

/// `numeric` travels as its exact decimal text: `Decimal(string:)` never goes through `Double`.
extension Decimal: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { description }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Decimal(string: postgresText, locale: Locale(identifier: "en_US_POSIX")), !value.isNaN else {
            throw .decodingFailure(as: "Decimal")
        }
        self = value
    }
}

extension PostgresTimestamp: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { description }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = PostgresTimestamp(parsing: postgresText) else {
            throw .decodingFailure(as: "timestamptz")
        }
        self = value
    }
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        guard let value = PostgresTimestamp(parsing: postgresBytes) else { throw .decodingFailure(as: "timestamptz") }
        self = value
    }
}

extension Date: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { PostgresTimestamp(self).description }
    public init(postgresText: String) throws(PostgresError) {
        self = try PostgresTimestamp(postgresText: postgresText).date
    }
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        self = try PostgresTimestamp(postgresBytes: postgresBytes).date
    }
}

/// `bytea` in PostgreSQL's hex format (`\x0a1b…`).
extension Data: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { "\\x" + map { String(format: "%02x", $0) }.joined() }
    public init(postgresText: String) throws(PostgresError) {
        guard postgresText.hasPrefix("\\x"), postgresText.utf8.count % 2 == 0 else {
            throw .decodingFailure(as: "Data")
        }
        var bytes = Data(capacity: (postgresText.utf8.count - 2) / 2)
        var high: UInt8?
        for byte in postgresText.utf8.dropFirst(2) {
            guard let nibble = HexDigit.value(byte) else { throw .decodingFailure(as: "Data") }
            if let first = high {
                bytes.append(first << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        self = bytes
    }
}

extension PostgresError {
    static func decodingFailure(as type: String) -> PostgresError {
        PostgresError(.decoding, message: "value is not a valid \(type)")
    }
}

/// A `text[]` parameter: each element double-quoted with `"` and `\` escaped, so any
/// text (JSON included) arrives as it was. Cast it in SQL (`$1::text[]`, `$1::uuid[]`).
public struct PostgresTextArray: Sendable, Hashable, PostgresEncodable {
    public let elements: [String]

    public init(_ elements: [String]) {
        self.elements = elements
    }

    /// The elements of a one-dimensional array in PostgreSQL's text output (`{a,"b c"}`);
    /// NULL elements are left out.
    public static func parse(_ text: String) -> [String] {
        var elements: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var escaped = false
        for character in text.dropFirst().dropLast() {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
                wasQuoted = true
            } else if character == ",", !quoted {
                if wasQuoted || current != "NULL" { elements.append(current) }
                current = ""
                wasQuoted = false
            } else {
                current.append(character)
            }
        }
        if wasQuoted || (!current.isEmpty && current != "NULL") { elements.append(current) }
        return elements
    }

    /// Every element quoted, `"` and `\\` escaped — on UTF-8 bytes (both are ASCII, never
    /// part of a multi-byte sequence): arrays of thousands of elements per statement.
    public var postgresText: String? {
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(elements.reduce(2) { $0 + $1.utf8.count + 3 })
        for (index, element) in elements.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(UInt8(ascii: "\""))
            for byte in element.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
}
