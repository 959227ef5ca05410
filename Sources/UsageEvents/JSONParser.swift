import Foundation

/// A strict RFC 8259 parser from bytes straight to `JSONValue`.
///
/// The ingest service parses every event it accepts, so this is on the hot path of
/// SPEC §7's ingest figure: `JSONDecoder` into `JSONValue` costs tens of
/// microseconds per event on Linux (each value is tried as several types, and every
/// miss throws). Numbers keep their exact decimal value (never `Double`); strings
/// must be valid UTF-8; a key repeated in an object is refused — `{"id": "a", "id": "b"}`
/// names two idempotency keys, and which one a billing system keeps must not be a
/// parser's accident. An error names where it was found (`JSONParseError.path`).
public struct JSONParser {
    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0

    /// Nesting deeper than this is refused, so a hostile body cannot exhaust the stack.
    public static let maximumDepth = 64

    /// Parses one JSON document (surrounding whitespace allowed).
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: Array(bytes))
        parser.skipByteOrderMark()
        parser.skipWhitespace()
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else { throw parser.error(JSONParseError.trailingText) }
        return value
    }

    /// One element of a top-level array, read by `elements(of:)`.
    public struct Element: Sendable {
        /// The element; of a key sent twice, the last value.
        public let value: JSONValue
        /// The element as it was written.
        public let text: ArraySlice<UInt8>
        /// Why the element is refused (a key sent twice in it, or what is not JSON in it),
        /// with its path within the element; nil for a well-formed element.
        public let refusal: JSONParseError?
    }

    /// The elements of a document that is a JSON array, each on its own: an element
    /// holding a key sent twice — well-formed JSON that `parse` refuses — comes with its
    /// `refusal`, and so does one that is not JSON inside but whose extent is still plain
    /// (`1e400`, a lone surrogate, a byte that is not UTF-8, inside brackets and quotes
    /// that close): its `value` is null and its `text` what was written. The others are
    /// unaffected (a worker parks that one event and goes on). A document whose shape
    /// cannot be followed (an unclosed string or bracket, a missing comma) is refused
    /// whole, as `parse` refuses it.
    public static func elements(of bytes: some Collection<UInt8>) throws(JSONParseError) -> [Element] {
        var parser = JSONParser(bytes: Array(bytes))
        parser.keepsLastOfDuplicateKeys = true
        parser.skipByteOrderMark()
        parser.skipWhitespace()
        guard parser.peek(UInt8(ascii: "[")) else {
            _ = try parse(parser.bytes)  // not JSON at all: that error
            throw JSONParseError(offset: parser.index, message: notAnArray)
        }
        try parser.enter()
        parser.index += 1
        var elements: [Element] = []
        parser.skipWhitespace()
        if parser.peek(UInt8(ascii: "]")) {
            parser.index += 1
        } else {
            while true {
                parser.skipWhitespace()
                let start = parser.index
                parser.foundDuplicateKey = false
                do {
                    let value = try parser.value()
                    let text = parser.bytes[start..<parser.index]
                    var refusal: JSONParseError?
                    if parser.foundDuplicateKey {
                        // Rare: read again, refusing, for the message and the path.
                        do {
                            _ = try parse(text)
                        } catch {
                            refusal = JSONParseError(
                                offset: start + error.offset, message: error.message, path: error.path, duplicateKey: error.duplicateKey)
                        }
                    }
                    elements.append(Element(value: value, text: text, refusal: refusal))
                } catch {
                    // Past the element by its shape alone; it is refused, the others read on.
                    parser.index = start
                    parser.depth = 1
                    guard parser.skipValue() else { throw error.within("[\(elements.count)]") }
                    elements.append(Element(value: .null, text: parser.bytes[start..<parser.index], refusal: error))
                }
                parser.skipWhitespace()
                if parser.peek(UInt8(ascii: ",")) {
                    parser.index += 1
                    continue
                }
                guard parser.peek(UInt8(ascii: "]")) else { throw parser.error("expected ',' or ']' in an array") }
                parser.index += 1
                break
            }
        }
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else { throw parser.error(JSONParseError.trailingText) }
        return elements
    }

    /// The members `keys` of the object `text` holds that are valid strings, read past what
    /// is not JSON in its other members: an event refused as not JSON inside (a number out of
    /// range) still names its id and tenant for the operator. Empty when `text` is not an
    /// object; what follows a member whose shape cannot be followed is not read.
    public static func strings(_ keys: Set<String>, inObject text: ArraySlice<UInt8>) -> [String: String] {
        var parser = JSONParser(bytes: Array(text))
        var found: [String: String] = [:]
        parser.skipWhitespace()
        guard parser.peek(UInt8(ascii: "{")) else { return found }
        parser.index += 1
        while true {
            parser.skipWhitespace()
            guard parser.peek(UInt8(ascii: "\"")), let key = try? parser.string() else { return found }
            parser.skipWhitespace()
            guard parser.peek(UInt8(ascii: ":")) else { return found }
            parser.index += 1
            parser.skipWhitespace()
            let start = parser.index
            if keys.contains(key), parser.peek(UInt8(ascii: "\"")), let value = try? parser.string() {
                found[key] = value
            } else {
                parser.index = start
                guard parser.skipValue() else { return found }
            }
            parser.skipWhitespace()
            guard parser.peek(UInt8(ascii: ",")) else { return found }
            parser.index += 1
        }
    }

    /// `elements(of:)`'s refusal of a JSON document that is not an array.
    public static let notAnArray = "the JSON value is not an array"

    /// `elements(of:)`'s reading: a key sent twice keeps its last value and is noted.
    private var keepsLastOfDuplicateKeys = false
    private var foundDuplicateKey = false

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private mutating func value() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default: return .number(try number())
        }
    }

    private mutating func object() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if peek(UInt8(ascii: "}")) {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek(UInt8(ascii: "\"")) else { throw error("expected a string key") }
            let keyOffset = index
            let key = try string()
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw error("expected ':' after a key") }
            index += 1
            skipWhitespace()
            let member: JSONValue
            do {
                member = try value()
            } catch {
                throw error.within(JSONParseError.component(key: key))
            }
            if members.updateValue(member, forKey: key) != nil {
                guard keepsLastOfDuplicateKeys else {
                    throw JSONParseError.duplicate(key, at: keyOffset)
                }
                foundDuplicateKey = true
            }
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                index += 1
                continue
            }
            if peek(UInt8(ascii: "}")) {
                index += 1
                return .object(members)
            }
            throw error("expected ',' or '}' in an object")
        }
    }

    private mutating func array() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            do {
                elements.append(try value())
            } catch {
                throw error.within("[\(elements.count)]")
            }
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                index += 1
                continue
            }
            if peek(UInt8(ascii: "]")) {
                index += 1
                return .array(elements)
            }
            throw error("expected ',' or ']' in an array")
        }
    }

    private mutating func string() throws(JSONParseError) -> String {
        index += 1  // opening quote
        var text: [UInt8] = []
        var start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                text.append(contentsOf: bytes[start..<index])
                index += 1
                // ASCII needs no validation (the generic validating initializer costs a
                // metadata lookup per call: a tenth of the Aggregator's decoding).
                if !text.contains(where: { $0 >= 0x80 }) { return String(decoding: text, as: UTF8.self) }
                guard let decoded = String(validating: text, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
                return decoded
            }
            if byte < 0x20 { throw error("a control character inside a string must be escaped") }
            if byte == UInt8(ascii: "\\") {
                text.append(contentsOf: bytes[start..<index])
                try escape(into: &text)
                start = index
                continue
            }
            index += 1
        }
        throw error("a string is not terminated")
    }

    private mutating func escape(into text: inout [UInt8]) throws(JSONParseError) {
        index += 1  // backslash
        guard index < bytes.count else { throw error("unexpected end of input in an escape") }
        let code = bytes[index]
        index += 1
        switch code {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(code)
        case UInt8(ascii: "b"): text.append(0x08)
        case UInt8(ascii: "f"): text.append(0x0C)
        case UInt8(ascii: "n"): text.append(0x0A)
        case UInt8(ascii: "r"): text.append(0x0D)
        case UInt8(ascii: "t"): text.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xD800..<0xDC00).contains(scalar) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw error("a high surrogate must be followed by a low one")
                }
                index += 2
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else { throw error("a high surrogate must be followed by a low one") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let unicode = Unicode.Scalar(scalar) else { throw error("\\u escape is not a Unicode scalar") }
            text.append(contentsOf: Array(String(Character(unicode)).utf8))
        default:
            throw error("unknown escape in a string")
        }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("\\u needs four hex digits") }
        var value: UInt32 = 0
        for byte in bytes[index..<index + 4] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("\\u needs four hex digits")
            }
            value = value << 4 | UInt32(digit)
        }
        index += 4
        return value
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, its value taken exactly from the text.
    private mutating func number() throws(JSONParseError) -> JSONNumber {
        let start = index
        if peek(UInt8(ascii: "-")) { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else { throw error("expected a JSON value") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if peek(UInt8(ascii: ".")) {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("a fraction needs digits") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
            index += 1
            if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("an exponent needs digits") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        // Metadata numbers are written back out by value (`JSONNumber.description`), so one
        // without a value (`1e999`) is refused here, as before numbers kept their text.
        guard let value = Decimal(string: text, locale: Self.posix), !value.isNaN else { throw error("a number is out of range") }
        return JSONNumber(validText: text, decimal: value)
    }

    private static let posix = Locale(identifier: "en_US_POSIX")

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count,
            word.withUTF8Buffer({ bytes[index..<index + count].elementsEqual($0) })
        else { throw error("expected a JSON value") }
        index += count
    }

    /// Moves past one value by its shape alone — a string to its closing quote (an escape
    /// taken as two bytes, its content unread), brackets to the one that closes them, any
    /// other run of bytes to the next `,` `]` or `}` — and says whether that was possible
    /// (brackets matched within `maximumDepth`, a string closed, something there).
    private mutating func skipValue() -> Bool {
        let start = index
        var open: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard index < bytes.count else { return false }
                index += 1
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                open.append(byte == UInt8(ascii: "[") ? UInt8(ascii: "]") : UInt8(ascii: "}"))
                guard open.count < Self.maximumDepth else { return false }
                index += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                guard let closing = open.last else { return index > start }
                guard closing == byte else { return false }
                open.removeLast()
                index += 1
            case UInt8(ascii: ","):
                if open.isEmpty { return index > start }
                index += 1
            default:
                index += 1
            }
        }
        return false
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw error("nested deeper than \(Self.maximumDepth) levels") }
    }

    /// A UTF-8 byte order mark before the document is ignored, as RFC 8259 allows a parser
    /// to (Windows tools write one; Foundation's decoder takes it too).
    private mutating func skipByteOrderMark() {
        if index == 0, bytes.starts(with: Self.byteOrderMark) { index = Self.byteOrderMark.count }
    }

    public static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    private mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    private func peek(_ byte: UInt8) -> Bool { index < bytes.count && bytes[index] == byte }
    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(offset: index, message: message)
    }
}

/// Why a body is not JSON, the byte offset where the parser gave up, and the value it
/// was reading there.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let offset: Int
    public let message: String
    /// Where in the document: `[3].metadata.region` (element 3 of the top-level array, its
    /// `metadata` member's `region` member; a key that is not a plain name is written
    /// `["a key"]`); empty when the error is in the top-level value itself.
    public let path: String
    /// The key found twice in one object, when that is the error (well-formed JSON, refused).
    public let duplicateKey: String?

    public init(offset: Int, message: String, path: String = "", duplicateKey: String? = nil) {
        self.offset = offset
        self.message = message
        self.path = path
        self.duplicateKey = duplicateKey
    }

    /// The refusal of `key` sent twice in one object.
    static func duplicate(_ key: String, at offset: Int) -> JSONParseError {
        JSONParseError(
            offset: offset, message: "the key \"\(key)\" appears more than once in an object: send each key once",
            path: component(key: key), duplicateKey: key)
    }

    public var description: String { path.isEmpty ? "\(message) (at byte \(offset))" : "\(message) (at \(path), byte \(offset))" }

    /// The error as the end of a refusal naming the document (`"file " + refusal`):
    /// `is not valid JSON: …` — for a key sent twice, which is valid JSON, the message
    /// alone — with the path and the byte.
    public var refusal: String { (duplicateKey == nil ? "is not valid JSON: " : "") + description }

    /// The path as a field name: `metadata.region` for `.metadata.region`, `[3].id` as is.
    public var field: String { path.hasPrefix(".") ? String(path.dropFirst()) : path }

    /// The refusal for a caller that names the path itself (as the error's field): the
    /// message and the byte (`counting`: what the byte counts from, when not the document).
    public func refusal(withoutPath counting: String = "") -> String {
        (duplicateKey == nil ? "is not valid JSON: " : "") + "\(message) (byte \(offset)\(counting.isEmpty ? "" : " " + counting))"
    }

    /// The error as seen from the value that holds the one it was found in.
    func within(_ component: String) -> JSONParseError {
        JSONParseError(offset: offset, message: message, path: component + path, duplicateKey: duplicateKey)
    }

    /// `.name` for a key of letters, digits and underscores not starting with a digit,
    /// `["…"]` (JSON-escaped) for any other.
    static func component(key: String) -> String {
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        func isLetter(_ byte: UInt8) -> Bool { byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z") }
        if let first = key.utf8.first, !isDigit(first), key.utf8.allSatisfy({ isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") }) {
            return "." + key
        }
        var writer = JSONWriter()
        writer.write(string: key)
        return "[" + String(decoding: writer.bytes, as: UTF8.self) + "]"
    }

    /// The message of a document followed by more text (`"{…}\n{…}"`: NDJSON sent without
    /// its content type).
    public static let trailingText = "unexpected text after the JSON value"
}
