import BlockingIO
import Foundation
import Synchronization

/// Where one record ends: acknowledging it acknowledges it and everything before.
public struct SpoolPosition: Sendable, Hashable, Comparable {
    public let segment: UInt64
    public let offset: Int64

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.segment, lhs.offset) < (rhs.segment, rhs.offset)
    }
}

/// One record read back from the spool, oldest first.
public struct SpooledRecord: Sendable {
    public let position: SpoolPosition
    public let payload: [UInt8]
}

/// A durable, append-only, bounded queue of byte records on local disk: the
/// metering pipeline's safety net while RabbitMQ is unavailable.
///
/// `append` returns only after the records are fsynced; `peek` reads the oldest
/// unacknowledged records; `acknowledge` durably moves the start past them and
/// deletes segment files no longer needed. After a crash at any moment, reopening
/// finds every record whose `append` returned (a torn tail of the last segment is
/// cut off); records may be handed out again if their acknowledgement did not
/// reach the disk, never lost or reordered. See README.md for the format.
///
/// File I/O runs on the spool's own thread (a `DedicatedThreadExecutor`), never on
/// Swift's cooperative pool.
public actor DiskSpool {
    private struct Entry {
        let segment: UInt64
        let offset: Int64
        let length: Int
        var end: SpoolPosition { SpoolPosition(segment: segment, offset: offset + Int64(Self.headerSize + length)) }
        static let headerSize = 12
    }

    private struct Stats {
        var records = 0
        var bytes = 0
    }

    static let magic: UInt32 = 0x5453_5031  // "TSP1"
    static let checkpointName = "checkpoint"

    private let executor: DedicatedThreadExecutor
    /// The folder holding the segments, the checkpoint and the dead-letter file.
    public nonisolated let directory: String
    private let maxBytes: Int
    private let segmentBytes: Int64
    private var entries: [Entry] = []
    private var head = 0
    private var currentSegment: UInt64 = 1
    private var currentSize: Int64 = 0
    private var writer: FileHandle?
    private let stats = Mutex(Stats())

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Records appended and not yet acknowledged (readable from any context, for metrics).
    public nonisolated var unacknowledgedRecordCount: Int { stats.withLock { $0.records } }
    /// Payload bytes appended and not yet acknowledged.
    public nonisolated var unacknowledgedByteCount: Int { stats.withLock { $0.bytes } }

    private init(directory: String, maxBytes: Int, segmentBytes: Int) {
        self.executor = DedicatedThreadExecutor(name: "spool")
        self.directory = directory
        self.maxBytes = maxBytes
        self.segmentBytes = Int64(segmentBytes)
    }

    /// Opens (creating if needed) the spool in `directory` and recovers its state.
    public static func open(directory: String, maxBytes: Int, segmentBytes: Int = 64 << 20) async throws -> DiskSpool {
        let spool = DiskSpool(directory: directory, maxBytes: maxBytes, segmentBytes: segmentBytes)
        try await spool.recover()
        return spool
    }

    isolated deinit {
        try? writer?.close()
        executor.shutdown()
    }

    /// Closes the current segment file; the spool must not be used afterwards.
    public func close() {
        try? writer?.close()
        writer = nil
    }

    // MARK: Appending

    /// Appends `records` as one batch and fsyncs before returning. Throws `.full`
    /// (appending nothing) when the batch would exceed `maxBytes` unacknowledged.
    public func append(_ records: [[UInt8]]) throws(SpoolError) {
        let batchBytes = records.reduce(0) { $0 + $1.count }
        guard unacknowledgedByteCount + batchBytes <= maxBytes else {
            throw SpoolError(.full, "the spool holds \(unacknowledgedByteCount) of \(maxBytes) bytes; drain it or raise the limit")
        }
        if currentSize >= segmentBytes { try rotate() }
        var frame = [UInt8]()
        frame.reserveCapacity(batchBytes + records.count * Entry.headerSize)
        var appended: [Entry] = []
        var offset = currentSize
        for record in records {
            Self.appendHeader(to: &frame, length: record.count, crc: CRC32.checksum(record))
            frame += record
            appended.append(Entry(segment: currentSegment, offset: offset, length: record.count))
            offset += Int64(Entry.headerSize + record.count)
        }
        do {
            let writer = try currentWriter()
            try writer.write(contentsOf: frame)
            try writer.synchronize()
        } catch {
            // A write that failed part-way, or an fsync that failed, leaves bytes past
            // `currentSize` that no entry describes: cut them off and drop the writer, so
            // the next append starts exactly where the last recorded record ends.
            discardUnrecordedTail()
            throw SpoolError(
                .io,
                "cannot write \(segmentPath(currentSegment)): \(error); nothing of this batch was kept. Free disk space or fix the device, then retry"
            )
        }
        currentSize = offset
        entries += appended
        stats.withLock {
            $0.records += records.count
            $0.bytes += batchBytes
        }
    }

    // MARK: Reading and acknowledging

    /// The oldest unacknowledged records, at most `maxRecords` and about `maxBytes`.
    public func peek(maxRecords: Int, maxBytes: Int = .max) throws(SpoolError) -> [SpooledRecord] {
        var records: [SpooledRecord] = []
        var bytes = 0
        var index = head
        var handles: [UInt64: FileHandle] = [:]
        defer { handles.values.forEach { try? $0.close() } }
        while index < entries.count, records.count < maxRecords, records.isEmpty || bytes + entries[index].length <= maxBytes {
            let entry = entries[index]
            do {
                if handles[entry.segment] == nil {
                    handles[entry.segment] = try FileHandle(forReadingFrom: URL(fileURLWithPath: segmentPath(entry.segment)))
                }
                let handle = handles[entry.segment]!
                try handle.seek(toOffset: UInt64(entry.offset + Int64(Entry.headerSize)))
                let payload = Array(try handle.read(upToCount: entry.length) ?? Data())
                guard payload.count == entry.length else { throw SpoolError(.corrupt, "short read") }
                records.append(SpooledRecord(position: entry.end, payload: payload))
            } catch {
                throw SpoolError(.io, "cannot read \(segmentPath(entry.segment)): \(error)")
            }
            bytes += entry.length
            index += 1
        }
        return records
    }

    /// Durably marks every record up to and including `position` as done.
    public func acknowledge(through position: SpoolPosition) throws(SpoolError) {
        var released = 0
        var releasedBytes = 0
        while head < entries.count, entries[head].end <= position {
            released += 1
            releasedBytes += entries[head].length
            head += 1
        }
        guard released > 0 else { return }
        let start =
            head < entries.count
            ? SpoolPosition(segment: entries[head].segment, offset: entries[head].offset)
            : SpoolPosition(segment: currentSegment, offset: currentSize)
        try writeCheckpoint(start)
        stats.withLock {
            $0.records -= released
            $0.bytes -= releasedBytes
        }
        if head > 4096 || head == entries.count {
            entries.removeFirst(head)
            head = 0
        }
        deleteSegments(before: start.segment)
    }

    // MARK: Setting records aside

    /// Copies `payload` into the dead-letter file beside the segments (`DeadLetterFile`),
    /// fsynced, with why it could not be delivered. The record itself stays in the spool
    /// until it is acknowledged: acknowledge it next, so a crash in between only ever
    /// sets it aside twice, never loses it.
    public func setAside(_ payload: [UInt8], reason: String, attempts: Int, at time: Date) throws(SpoolError) {
        try DeadLetterFile(spoolDirectory: directory).append(
            DeadLetter(time: time, reason: reason, attempts: attempts, record: payload))
    }

    // MARK: Files

    private func segmentPath(_ segment: UInt64) -> String {
        directory + "/" + String(format: "%020llu", segment) + ".seg"
    }

    private func currentWriter() throws -> FileHandle {
        if let writer { return writer }
        let path = segmentPath(currentSegment)
        let isNew = !FileManager.default.fileExists(atPath: path)
        if isNew {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw SpoolError(.io, "cannot create \(path): check permissions and free space")
            }
            try syncDirectory()
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        // Whatever lies past the last recorded record (the rest of a failed append whose
        // truncation failed too) is cut off before anything new is written.
        try handle.truncate(atOffset: UInt64(currentSize))
        writer = handle
        return handle
    }

    /// After a failed append: closes the writer and truncates the segment back to the
    /// recorded size. If the truncation fails as well, `currentWriter` retries it before
    /// the next write, so no later record lands behind unrecorded bytes.
    private func discardUnrecordedTail() {
        try? writer?.close()
        writer = nil
        truncate(segmentPath(currentSegment), to: currentSize)
    }

    private func rotate() throws(SpoolError) {
        try? writer?.close()
        writer = nil
        currentSegment += 1
        currentSize = 0
    }

    /// Overwrites the checkpoint in place (one fixed-size line, never a new file): on a
    /// full disk a replacement file could not be created, and then nothing could be
    /// acknowledged and no segment freed. The line is far smaller than a disk sector, so
    /// it is written whole or not at all; its CRC catches anything else, and a checkpoint
    /// that does not read back only makes records come back once more (never lost).
    private func writeCheckpoint(_ start: SpoolPosition) throws(SpoolError) {
        let path = directory + "/" + Self.checkpointName
        let isNew = !FileManager.default.fileExists(atPath: path)
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT, 0o644)
        guard descriptor >= 0 else { throw SpoolError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(descriptor) }
        let line = Self.checkpointLine(start)
        let written = line.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        guard written == line.count, fsync(descriptor) == 0 else {
            throw SpoolError(.io, "cannot write \(path): \(String(cString: strerror(errno))); free disk space, then retry")
        }
        if isNew { try syncDirectory() }
    }

    /// `SEGMENT OFFSET CRC` in fixed widths (20, 20 and 8 characters), newline-terminated.
    static func checkpointLine(_ start: SpoolPosition) -> [UInt8] {
        let position = Array(Self.padded(String(start.segment), 20).utf8) + [0x20] + Array(Self.padded(String(start.offset), 20).utf8)
        let crc = String(CRC32.checksum(position), radix: 16)
        return position + [0x20] + Array(Self.padded(crc, 8).utf8) + [0x0A]
    }

    private static func padded(_ text: String, _ width: Int) -> String {
        String(repeating: "0", count: max(0, width - text.count)) + text
    }

    private func syncDirectory() throws(SpoolError) {
        let descriptor = Glibc.open(directory, O_RDONLY | O_DIRECTORY)
        guard descriptor >= 0 else { throw SpoolError(.io, "cannot open \(directory): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(descriptor) }
        guard fsync(descriptor) == 0 else { throw SpoolError(.io, "cannot fsync \(directory)") }
    }

    private func deleteSegments(before segment: UInt64) {
        for existing in segmentNumbers() where existing < segment {
            try? FileManager.default.removeItem(atPath: segmentPath(existing))
        }
    }

    private func segmentNumbers() -> [UInt64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { $0.hasSuffix(".seg") ? UInt64($0.dropLast(4)) : nil }.sorted()
    }

    // MARK: Recovery

    private func recover() throws(SpoolError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SpoolError(.io, "cannot create the spool folder \(directory): \(error)")
        }
        let start = readCheckpoint()
        let segments = segmentNumbers().filter { $0 >= start.segment }
        deleteSegments(before: start.segment)
        currentSegment = max(segments.last ?? start.segment, start.segment)
        currentSize = 0
        var records = 0
        var bytes = 0
        for segment in segments {
            let isLast = segment == segments.last
            let (found, validEnd) = try scan(segment, from: segment == start.segment ? start.offset : 0, isLast: isLast)
            entries += found
            records += found.count
            bytes += found.reduce(0) { $0 + $1.length }
            if isLast { currentSize = validEnd }
        }
        stats.withLock {
            $0.records = records
            $0.bytes = bytes
        }
        // Rewritten now, while there is room for it, so that acknowledging never needs new
        // disk space later (it overwrites this line in place).
        try writeCheckpoint(
            entries.first.map { SpoolPosition(segment: $0.segment, offset: $0.offset) }
                ?? SpoolPosition(segment: currentSegment, offset: currentSize))
    }

    /// The checkpoint, or the start of the oldest segment when there is none or it does
    /// not read back (then acknowledged records of that segment come back once more).
    /// Reads the older `SEGMENT OFFSET` form, written by replacing the file, too.
    private func readCheckpoint() -> SpoolPosition {
        let path = directory + "/" + Self.checkpointName
        let fallback = SpoolPosition(segment: segmentNumbers().first ?? 1, offset: 0)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return fallback }
        let parts = text.split(whereSeparator: \.isWhitespace)
        guard parts.count == 2 || parts.count == 3, let segment = UInt64(parts[0]), let offset = Int64(parts[1]) else {
            return fallback
        }
        if parts.count == 3 {
            let position = Array(parts[0].utf8) + [0x20] + Array(parts[1].utf8)
            guard UInt32(parts[2], radix: 16) == CRC32.checksum(position) else { return fallback }
        }
        return SpoolPosition(segment: segment, offset: offset)
    }

    /// The valid records of one segment from `offset`; a damaged tail of the last
    /// segment is cut off, damage anywhere else is an error.
    private func scan(_ segment: UInt64, from offset: Int64, isLast: Bool) throws(SpoolError) -> ([Entry], Int64) {
        let path = segmentPath(segment)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SpoolError(.io, "cannot read \(path)")
        }
        let bytes = [UInt8](data)
        var found: [Entry] = []
        var position = Int(offset)
        while position < bytes.count {
            guard let length = Self.validRecord(in: bytes, at: position) else {
                guard isLast else {
                    throw SpoolError(.corrupt, "\(path) is damaged at byte \(position); move it aside to inspect it")
                }
                truncate(path, to: Int64(position))
                break
            }
            found.append(Entry(segment: segment, offset: Int64(position), length: length))
            position += Entry.headerSize + length
        }
        return (found, Int64(min(position, bytes.count)))
    }

    /// The payload length of an intact record at `position`, or nil.
    private static func validRecord(in bytes: [UInt8], at position: Int) -> Int? {
        guard position + Entry.headerSize <= bytes.count,
            readUInt32(bytes, position) == magic
        else { return nil }
        let length = Int(readUInt32(bytes, position + 4))
        let start = position + Entry.headerSize
        guard start + length <= bytes.count,
            CRC32.checksum(bytes[start..<start + length]) == readUInt32(bytes, position + 8)
        else { return nil }
        return length
    }

    private func truncate(_ path: String, to length: Int64) {
        let descriptor = Glibc.open(path, O_WRONLY)
        guard descriptor >= 0 else { return }
        defer { Glibc.close(descriptor) }
        _ = ftruncate(descriptor, off_t(length))
        _ = fsync(descriptor)
    }

    private static func appendHeader(to frame: inout [UInt8], length: Int, crc: UInt32) {
        for value in [magic, UInt32(length), crc] {
            frame += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
        }
    }

    private static func readUInt32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }
}
