/// PostgreSQL's COPY text format: columns separated by tabs, rows by newlines,
/// NULL as `\N`, and backslash, tab, newline and carriage return escaped.
enum CopyTextFormat {
    static func append(_ row: [any PostgresEncodable], to buffer: inout [UInt8]) {
        var writer = CopyTextWriter(buffer: buffer)
        buffer = []
        for value in row { writer.field(value.postgresText) }
        writer.endRow()
        buffer = writer.buffer
    }
}

/// Builds COPY text rows field by field without boxing values (the Aggregator's
/// hot path: thousands of rows per transaction). Every field is escaped, so any
/// text is data; `nil` is SQL NULL.
public struct CopyTextWriter: Sendable {
    public private(set) var buffer: [UInt8]
    private var rowHasField = false

    public init(buffer: [UInt8] = [], reservingCapacity capacity: Int = 0) {
        self.buffer = buffer
        self.buffer.reserveCapacity(capacity)
    }

    /// Whether no row was written.
    public var isEmpty: Bool { buffer.isEmpty }

    /// Gives back what the buffer reserved beyond what it holds, when that is more than
    /// it holds (one copy of the written bytes).
    public mutating func releaseUnusedCapacity() {
        guard buffer.capacity > 2 * buffer.count + 4096 else { return }
        // From the bytes, not the array: `Array(buffer[...])` hands back the same storage.
        buffer = buffer.withUnsafeBufferPointer { Array($0) }
    }

    /// One field of the current row.
    public mutating func field(_ text: String?) {
        separate()
        guard var text else {
            buffer.append(UInt8(ascii: "\\"))
            buffer.append(UInt8(ascii: "N"))
            return
        }
        text.withUTF8 { escape($0) }
    }

    /// One field given as UTF-8 bytes (e.g. JSON written by `JSONWriter`).
    public mutating func field(utf8 bytes: some Sequence<UInt8>) {
        separate()
        // Contiguous bytes (arrays, slices) are escaped from memory in runs: this is called
        // from other modules for every field of every event, where a byte-by-byte walk of
        // a generic sequence costs a witness call per byte.
        if bytes.withContiguousStorageIfAvailable({ escape($0) }) == nil {
            Array(bytes).withUnsafeBufferPointer { escape($0) }
        }
    }

    /// Ends the current row.
    public mutating func endRow() {
        buffer.append(UInt8(ascii: "\n"))
        rowHasField = false
    }

    private mutating func separate() {
        if rowHasField { buffer.append(UInt8(ascii: "\t")) }
        rowHasField = true
    }

    /// Appends `bytes`, each backslash, tab, newline and carriage return as its escape;
    /// the runs between them in one copy each.
    private mutating func escape(_ bytes: UnsafeBufferPointer<UInt8>) {
        var run = 0
        for index in bytes.indices {
            let escaped: UInt8
            switch bytes[index] {
            case UInt8(ascii: "\\"): escaped = UInt8(ascii: "\\")
            case UInt8(ascii: "\t"): escaped = UInt8(ascii: "t")
            case UInt8(ascii: "\n"): escaped = UInt8(ascii: "n")
            case UInt8(ascii: "\r"): escaped = UInt8(ascii: "r")
            default: continue
            }
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<index]))
            buffer.append(UInt8(ascii: "\\"))
            buffer.append(escaped)
            run = index + 1
        }
        buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...]))
    }
}
