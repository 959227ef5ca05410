import Foundation
import TallyTestSupport
import Testing

@testable import UsageEvents

@Suite("JSONWriter: the fast wire encoding of usage events")
struct JSONWriterTests {
    static let alphabet = Array("aZ09 _-/\"\\\n\r\t\u{01}\u{1F}é€😀{}[]:,")

    func text(_ generator: inout SeededRandom) -> String {
        String((0..<Int.random(in: 0...12, using: &generator)).map { _ in Self.alphabet.randomElement(using: &generator)! })
    }

    func value(_ generator: inout SeededRandom, depth: Int = 0) -> JSONValue {
        switch Int.random(in: 0...(depth > 2 ? 3 : 5), using: &generator) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &generator))
        case 2:
            let units = Int64.random(in: -1_000_000_000...1_000_000_000, using: &generator)
            return .number(Decimal(units) / 10_000)
        case 3: return .string(text(&generator))
        case 4: return .array((0..<Int.random(in: 0...3, using: &generator)).map { _ in value(&generator, depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0...3, using: &generator) { members[text(&generator)] = value(&generator, depth: depth + 1) }
            return .object(members)
        }
    }

    func event(_ generator: inout SeededRandom) -> UsageEvent {
        var metadata: [String: JSONValue] = [:]
        for _ in 0..<Int.random(in: 0...3, using: &generator) { metadata[text(&generator)] = value(&generator) }
        let micros = Int64.random(in: -100_000_000_000_000...4_000_000_000_000_000, using: &generator)
        return UsageEvent(
            id: EventID.make(millisecondsSinceEpoch: UInt64.random(in: 0...4_000_000_000_000, using: &generator), using: &generator),
            tenantID: UUID(uuid: withUnsafeBytes(of: (generator.next(), generator.next())) { $0.load(as: uuid_t.self) }),
            metric: "m_\(Int.random(in: 0...99, using: &generator))",
            name: Bool.random(using: &generator) ? text(&generator) : nil,
            quantity: Quantity(scaled: Int128(Int64.random(in: 0...10_000_000_000_000_000, using: &generator))),
            unit: Bool.random(using: &generator) ? text(&generator) : nil,
            time: Date(timeIntervalSince1970: Double(micros) / 1_000_000),
            metadata: metadata)
    }

    @Test("2,000 random events: the writer's bytes decode to the same events as JSONEncoder's")
    func sameAsFoundation() throws {
        let seed = UInt64.random(in: .min ... .max)
        var generator = SeededRandom(seed: seed)
        let events = (0..<2_000).map { _ in event(&generator) }
        let written = JSONWriter.encode(events)
        let decoded = try JSONDecoder().decode([UsageEvent].self, from: Data(written))
        let reference = try JSONDecoder().decode([UsageEvent].self, from: JSONEncoder().encode(events))
        #expect(decoded == reference, "seed \(seed)")
        #expect(decoded.map(\.id) == events.map(\.id), "seed \(seed)")
        // Each value also survives as its own document, byte for byte in the fields we format.
        for event in events.prefix(200) {
            let one = String(decoding: JSONWriter.encode([event]), as: UTF8.self)
            #expect(one.contains(#""tenant_id":"\#(event.tenantID.uuidString.lowercased())""#), "seed \(seed)")
            #expect(one.contains(#""time":"\#(RFC3339.format(event.time))""#), "seed \(seed)")
        }
    }

    @Test("control characters, quotes and backslashes are escaped; other text passes as UTF-8")
    func escaping() {
        var writer = JSONWriter()
        writer.write(string: "a\"b\\c\nd\u{01}é😀")
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #""a\"b\\c\nd\u0001é😀""#)
    }

    @Test("RFC 3339 formatting pads every field and keeps microseconds")
    func timeFormat() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000000Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -0.000001)) == "1969-12-31T23:59:59.999999Z")
        #expect(RFC3339.format(RFC3339.parse("1900-02-03T04:05:06.000007Z")!) == "1900-02-03T04:05:06.000007Z")
        #expect(RFC3339.format(RFC3339.parse("2100-12-31T23:59:59.999999Z")!) == "2100-12-31T23:59:59.999999Z")
    }
}

@Suite("JSONParser: strict JSON straight to JSONValue")
struct JSONParserTests {
    @Test("3,000 random values: writer → parser gives the value back, and JSONDecoder agrees")
    func roundTrip() throws {
        let seed = UInt64.random(in: .min ... .max)
        var generator = SeededRandom(seed: seed)
        let values = JSONWriterTests()
        for _ in 0..<3_000 {
            let original = values.value(&generator)
            var writer = JSONWriter()
            writer.write(original)
            let parsed = try JSONParser.parse(writer.bytes)
            #expect(parsed == original, "seed \(seed)")
            #expect(parsed == (try JSONDecoder().decode(JSONValue.self, from: Data(writer.bytes))), "seed \(seed)")
        }
    }

    @Test("escapes, surrogate pairs, exact numbers and whitespace")
    func details() throws {
        #expect(
            try JSONParser.parse(Array(#" {"a" : [1, -0.5, 2.5e3, 1E-2, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"]} "#.utf8))
                == .object([
                    "a": .array([
                        .number(1), .number(Decimal(string: "-0.5")!), .number(2500), .number(Decimal(string: "0.01")!), .bool(true), .bool(false),
                        .null,
                        .string("x\"\\/\u{08}\u{0C}\n\r\té😀"),
                    ])
                ]))
        #expect(try JSONParser.parse(Array("1000000000000.0001".utf8)) == .number(Decimal(string: "1000000000000.0001")!))
        // A byte order mark before the document is ignored; anywhere else it is not JSON.
        #expect(try JSONParser.parse(JSONParser.byteOrderMark + Array(#"{"a": 1}"#.utf8)) == .object(["a": .number(1)]))
        #expect(try JSONParser.elements(of: JSONParser.byteOrderMark + Array("[1, 2]".utf8)).map(\.value) == [.number(1), .number(2)])
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(" ".utf8) + JSONParser.byteOrderMark + Array("1".utf8)) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array("[".utf8) + JSONParser.byteOrderMark + Array("1]".utf8)) }
    }

    @Test(
        "a key sent twice in an object is refused, naming where",
        arguments: [
            (#"{"k": 1, "k": 2}"#, "k", ".k", 9),
            (#"[{"id": "a"}, {"id": "b", "quantity": 1, "id": "c"}]"#, "id", "[1].id", 41),
            (#"{"metadata": {"a b": 1, "a b": 1}}"#, "a b", #".metadata["a b"]"#, 24),
            (#"[[{"x": {"y": null, "y": null}}]]"#, "y", "[0][0].x.y", 20),
        ])
    func duplicateKeys(text: String, key: String, path: String, offset: Int) {
        let refusal = JSONParseError(
            offset: offset, message: "the key \"\(key)\" appears more than once in an object: send each key once", path: path, duplicateKey: key)
        #expect(throws: refusal) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test("numbers past Decimal's 38 digits keep their text: two 42-digit values stay two; 1, 1.0 and 1e0 stay one")
    func longNumbers() throws {
        func number(_ text: String) throws -> JSONNumber {
            guard case .number(let number) = try JSONParser.parse(Array(text.utf8)) else { throw JSONParseError(offset: 0, message: "not a number") }
            return number
        }
        let a = try number("123456789012345678901234567890123456789012")
        let b = try number("123456789012345678901234567890123456789013")
        #expect(a != b && Set([a, b]).count == 2)
        #expect(!a.isExact && a.description == "123456789012345678901234567890123456789012")
        var writer = JSONWriter()
        writer.write(.object(["user": .number(b)]))
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"user":123456789012345678901234567890123456789013}"#)
        let long = try number("0.1234567890123456789012345678901234567890")
        #expect(long.description == "0.1234567890123456789012345678901234567890")
        #expect(try number("1") == number("1.0") && number("1e0") == number("1") && number("1.0").description == "1")
        #expect(try number("100000000000000000000000000000000000000000000").isExact)  // one significant digit
        #expect(JSONNumber.significantDigits("-0.00120e5") == 2 && JSONNumber.significantDigits("1200") == 2)
        #expect(JSONNumber.significantDigits("10203") == 5 && JSONNumber.significantDigits("0") == 0)
    }

    @Test("an error names the value it was found in")
    func errorPath() {
        #expect(throws: JSONParseError(offset: 40, message: "a fraction needs digits", path: "[1].quantity")) {
            try JSONParser.parse(Array(#"[{"id": "a"}, {"id": "b", "quantity": 1.}]"#.utf8))
        }
        #expect(throws: JSONParseError(offset: 1, message: "expected a string key")) { try JSONParser.parse(Array("{not json".utf8)) }
    }

    @Test("elements of an array: one holding a key sent twice is refused alone, the others read; one not JSON inside is refused alone")
    func elements() throws {
        let text = #"[{"id":"a"}, {"id":"b","id":"c"}, {"id":"d"}]"#
        let elements = try JSONParser.elements(of: Array(text.utf8))
        #expect(elements.map(\.value) == [.object(["id": .string("a")]), .object(["id": .string("c")]), .object(["id": .string("d")])])
        #expect(elements.map { String(decoding: $0.text, as: UTF8.self) } == [#"{"id":"a"}"#, #"{"id":"b","id":"c"}"#, #"{"id":"d"}"#])
        #expect(elements.map(\.refusal?.path) == [nil, ".id", nil])
        #expect(elements[1].refusal?.offset == 23)  // in the whole document
        #expect(try JSONParser.elements(of: Array("[]".utf8)).isEmpty)
        #expect(throws: JSONParseError(offset: 0, message: JSONParser.notAnArray)) { try JSONParser.elements(of: Array(#"{"id": "a"}"#.utf8)) }
        #expect(throws: JSONParseError(offset: 0, message: "expected a JSON value")) { try JSONParser.elements(of: Array("not json".utf8)) }
        #expect(throws: JSONParseError(offset: 4, message: JSONParseError.trailingText)) { try JSONParser.elements(of: Array("[1] 2".utf8)) }
    }

    @Test("an element not JSON inside — a number out of range, a lone surrogate, a byte not UTF-8, a raw NUL, a value missing — is refused alone")
    func malformedElements() throws {
        for (inner, message, path) in [
            (Array(#"{"id": "b", "metadata": {"v": 1e400}}"#.utf8), "a number is out of range", ".metadata.v"),
            (Array(#"{"id": "b", "name": "\ud800"}"#.utf8), "a high surrogate must be followed by a low one", ".name"),
            (Array(#"{"id": "b", "name": "x"#.utf8) + [0xFF] + Array(#""}"#.utf8), "a string is not valid UTF-8", ".name"),
            (Array(#"{"id": "b", "name": "x"#.utf8) + [0x00] + Array(#""}"#.utf8), "a control character inside a string must be escaped", ".name"),
            (Array(#"{"id": }"#.utf8), "expected a JSON value", ".id"),
            (Array(#"{"id": "b", "t": [1, {"u": tru}]}"#.utf8), "expected a JSON value", ".t[1].u"),
        ] {
            let document = Array(#"[{"id":"a"}, "#.utf8) + inner + Array(#", {"id":"c"}]"#.utf8)
            let elements = try JSONParser.elements(of: document)
            #expect(elements.map(\.value) == [.object(["id": .string("a")]), .null, .object(["id": .string("c")])], "\(message)")
            #expect(Array(elements[1].text) == inner)
            #expect(elements[1].refusal?.message == message)
            #expect(elements[1].refusal?.path == path)
            #expect(elements[0].refusal == nil && elements[2].refusal == nil)
        }
        // Its id and tenant still read, past what is not JSON (for the operator's listing).
        let labels = JSONParser.strings(
            ["id", "tenant_id"], inObject: Array(#"{"metadata": {"v": 1e400, "w": "}"}, "id": "b", "n": [1, "]"], "tenant_id": "t"}"#.utf8)[...])
        #expect(labels == ["id": "b", "tenant_id": "t"])
        #expect(JSONParser.strings(["id"], inObject: Array(#"{"id": "\ud800", "x": 1}"#.utf8)[...]).isEmpty)
        #expect(JSONParser.strings(["id"], inObject: Array(#"["id", "b"]"#.utf8)[...]).isEmpty)
        #expect(JSONParser.strings(["id"], inObject: Array(#"{"a": tru, "id": "c"}"#.utf8)[...]) == ["id": "c"])
        // What cannot be followed still refuses the whole document: an unclosed string or
        // bracket, brackets that do not match, a missing comma.
        for text in [#"[{"id":"a"}, {"id": "b]"#, #"[{"id":"a"}, {"id": [1}]"#, #"[{"id":"a"} {"id":"b"}]"#, #"[{"id":"a"}, {"id": [1]"#] {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONParser.elements(of: Array(text.utf8)) }
        }
    }

    @Test(
        "malformed JSON is refused",
        arguments: [
            "", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a: 1}", "01", "1.", ".5", "-", "1e", "+1", "NaN", "Infinity", "tru", "nul",
            "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\ud800\"", "\"\\ud800\\u0041\"", "\"tab\there\"", "[1] 2", "{\"a\":1}}",
            String(repeating: "[", count: 100) + String(repeating: "]", count: 100),
        ])
    func refuses(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test("a string that is not UTF-8 is refused")
    func invalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
    }
}
