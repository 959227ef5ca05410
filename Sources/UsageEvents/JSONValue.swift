import Foundation

/// Any JSON value, kept exactly: numbers keep their decimal text, so metadata
/// passes through Tally unchanged.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let number = try? container.decode(Decimal.self) {
            self = .number(JSONNumber(number))
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else if let array = try? container.decode([JSONValue].self) {
            self = .array(array)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let flag): try container.encode(flag)
        case .number(let number): try container.encode(number.decimal)
        case .string(let text): try container.encode(text)
        case .array(let values): try container.encode(values)
        case .object(let values): try container.encode(values)
        }
    }

    /// The value as text when it is a string or a number (for `unique_count` fields).
    public var scalarText: String? {
        switch self {
        case .string(let text): text
        case .number(let number): number.decimal.description
        case .bool(let flag): String(flag)
        default: nil
        }
    }
}

extension JSONValue {
    /// A number from a `Decimal`, as callers wrote before numbers kept their text.
    @_disfavoredOverload
    public static func number(_ value: Decimal) -> JSONValue { .number(JSONNumber(value)) }
}

/// A JSON number exactly as it was written (`12`, `0.50`, `1e3`), so an exact type — an
/// event's `Quantity` — is parsed from its text, never through `Decimal` or `Double`.
/// Two numbers are equal when their values are (`1.0` and `1`).
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The number's text, valid JSON number grammar.
    public let text: String
    /// The value as a `Decimal` (for metadata; quantities are parsed from `text`), read
    /// once where the number is made.
    public let decimal: Decimal

    /// Whether `decimal` is the number's exact value: `Decimal` holds 38 significant
    /// digits, so two 42-digit numbers differing in the last could read as one (two
    /// distinct values of a unique_count counted once). Past them the text is the value.
    public let isExact: Bool

    /// A number the parser read: `text` follows the JSON grammar and has the value `decimal`.
    init(validText text: String, decimal: Decimal) {
        self.text = text
        self.decimal = decimal
        self.isExact = Self.significantDigits(text) <= 38
    }

    public init(_ value: Decimal) {
        self.text = value.description
        self.decimal = value
        self.isExact = true
    }

    public init(integerLiteral value: Int) {
        self.text = String(value)
        self.decimal = Decimal(value)
        self.isExact = true
    }

    /// The value's canonical text (`1000`, not `1e3`), as the number is written back out;
    /// a number of more significant digits than `Decimal` holds, as it was written.
    public var description: String { isExact ? decimal.description : text }

    /// Equal values (`1`, `1.0` and `1e0` are one); a number past `Decimal`'s digits equals
    /// only the same text.
    public static func == (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        lhs.isExact && rhs.isExact ? lhs.decimal == rhs.decimal : lhs.isExact == rhs.isExact && lhs.text == rhs.text
    }

    public func hash(into hasher: inout Hasher) {
        if isExact { hasher.combine(decimal) } else { hasher.combine(text) }
    }

    /// The significant digits of a JSON number's text: its digits before any exponent,
    /// without the leading and trailing zeros (`0.00120` has 2, `1200` has 2).
    static func significantDigits(_ text: String) -> Int {
        var digits = 0
        var pendingZeros = 0
        var started = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "e"), UInt8(ascii: "E"): return digits
            case UInt8(ascii: "0"):
                if started { pendingZeros += 1 }
            case UInt8(ascii: "1")...UInt8(ascii: "9"):
                started = true
                digits += pendingZeros + 1
                pendingZeros = 0
            default: continue
            }
        }
        return digits
    }
}
