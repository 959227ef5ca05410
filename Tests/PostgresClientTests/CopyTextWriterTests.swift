import PostgresClient
import TallyTestSupport
import Testing

@Suite("COPY text writer")
struct CopyTextWriterTests {
    @Test("fields are escaped for COPY text, NULL is \\N, rows end with a newline")
    func escaping() {
        var writer = CopyTextWriter()
        writer.field("a\tb\\c\nd")
        writer.field(nil)
        writer.endRow()
        #expect(String(decoding: writer.buffer, as: UTF8.self) == "a\\tb\\\\c\\nd\t\\N\n")
    }

    /// The format's escaping, byte by byte.
    static func reference(_ bytes: [UInt8]) -> [UInt8] {
        bytes.flatMap { byte -> [UInt8] in
            switch byte {
            case UInt8(ascii: "\\"): return Array("\\\\".utf8)
            case UInt8(ascii: "\t"): return Array("\\t".utf8)
            case UInt8(ascii: "\n"): return Array("\\n".utf8)
            case UInt8(ascii: "\r"): return Array("\\r".utf8)
            default: return [byte]
            }
        }
    }

    @Test("2,000 random fields, as text, byte arrays, slices and other sequences: each escaped as the reference does")
    func randomFields() {
        var generator = SeededRandom(seed: 0xC0B7)
        // The escaped bytes often, side by side and at either end; UTF-8 of several lengths.
        let alphabet = Array("\\\t\n\ra Z0é€😀\u{01}".utf8)
        for round in 0..<2_000 {
            let fields = (0..<Int.random(in: 1...4, using: &generator)).map { _ in
                (0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            }
            var writer = CopyTextWriter()
            var expected: [UInt8] = []
            for (index, field) in fields.enumerated() {
                let way = (round + index) % 4
                // Text holds valid UTF-8: bytes cut mid-character are written as Swift repaired them.
                let text = String(decoding: field, as: UTF8.self)
                if index > 0 { expected.append(UInt8(ascii: "\t")) }
                expected += Self.reference(way == 0 ? Array(text.utf8) : field)
                switch way {
                case 0: writer.field(text)
                case 1: writer.field(utf8: field)
                case 2: writer.field(utf8: ([0] + field + [0])[1..<(field.count + 1)])
                default: writer.field(utf8: field.lazy.map { $0 })  // not contiguous
                }
            }
            writer.endRow()
            expected.append(UInt8(ascii: "\n"))
            #expect(writer.buffer == expected, "round \(round): \(fields)")
        }
    }

    @Test("unused reserved capacity is given back, the bytes kept; a buffer mostly used is left alone")
    func releaseUnusedCapacity() {
        var writer = CopyTextWriter(reservingCapacity: 1 << 20)
        for index in 0..<100 {
            writer.field("row \(index)")
            writer.endRow()
        }
        let written = writer.buffer
        #expect(writer.buffer.capacity >= 1 << 20)
        writer.releaseUnusedCapacity()
        #expect(writer.buffer == written)
        #expect(writer.buffer.capacity < 2 * written.count + 4096)

        var full = CopyTextWriter(reservingCapacity: 64)
        full.field(String(repeating: "x", count: 60))
        let capacity = full.buffer.capacity
        full.releaseUnusedCapacity()
        #expect(full.buffer.capacity == capacity)
    }
}
