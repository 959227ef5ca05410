import PostgresClient
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
