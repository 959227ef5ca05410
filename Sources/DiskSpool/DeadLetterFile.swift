import Foundation

/// A spooled record set aside because it could not be delivered (the broker kept
/// refusing it, or it cannot be read), with why and when.
public struct DeadLetter: Sendable, Equatable, Codable {
    /// Names this dead letter for `replay` and `purge` (a UUID; not the record's content).
    public let id: String
    public let time: Date
    /// Why it was set aside, e.g. `returned 312 NO_ROUTE` or `unreadable spool record`.
    public let reason: String
    /// Delivery attempts made before it was set aside.
    public let attempts: Int
    /// The record's bytes exactly as they were spooled.
    public let record: [UInt8]

    public init(id: String = UUID().uuidString.lowercased(), time: Date, reason: String, attempts: Int, record: [UInt8]) {
        self.id = id
        self.time = time
        self.reason = reason
        self.attempts = attempts
        self.record = record
    }

    private enum CodingKeys: String, CodingKey { case id, time, reason, attempts, record }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        time = try container.decode(Date.self, forKey: .time)
        reason = try container.decode(String.self, forKey: .reason)
        attempts = try container.decode(Int.self, forKey: .attempts)
        record = Array(try container.decode(Data.self, forKey: .record))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(time, forKey: .time)
        try container.encode(reason, forKey: .reason)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(Data(record), forKey: .record)
    }
}

/// `dead-letter.ndjson` beside a spool's segments: one JSON object a line (`id`, `time`
/// in ISO 8601, `reason`, `attempts`, `record` in base64). Appends are fsynced before
/// they return; nothing is ever dropped from it but by `remove` (replayed or purged).
///
/// The producer appends while an operator's command lists, replays or purges, from
/// another process: every operation holds an exclusive `flock` on `dead-letter.lock`
/// (a file never replaced, unlike the letters file, which `remove` rewrites and renames).
/// Calls block on file I/O: run them off Swift's cooperative pool (the spool's thread).
public struct DeadLetterFile: Sendable {
    public static let fileName = "dead-letter.ndjson"
    static let lockName = "dead-letter.lock"

    public let directory: String
    public var path: String { directory + "/" + Self.fileName }
    private var lockPath: String { directory + "/" + Self.lockName }

    /// The dead letters of the spool in `directory` (nothing is created until the first append).
    public init(spoolDirectory directory: String) {
        self.directory = directory
    }

    /// Appends `letter` and fsyncs it (and the folder, when the file is new).
    public func append(_ letter: DeadLetter) throws(SpoolError) {
        let line: [UInt8]
        do {
            line = Array(try Self.encoder.encode(letter)) + [0x0A]
        } catch {
            throw SpoolError(.io, "cannot encode a dead letter: \(error)")
        }
        try locked { () throws(SpoolError) in
            let isNew = !FileManager.default.fileExists(atPath: path)
            let descriptor = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
            guard descriptor >= 0 else { throw Self.failure("cannot open \(path)") }
            defer { Glibc.close(descriptor) }
            let written = line.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            guard written == line.count else {
                // A short line would make every later line unreadable: cut it off.
                if written > 0 { _ = ftruncate(descriptor, lseek(descriptor, 0, SEEK_END) - off_t(written)) }
                throw Self.failure("cannot write \(path) (free disk space, then retry)")
            }
            guard fsync(descriptor) == 0 else { throw Self.failure("cannot fsync \(path)") }
            if isNew { try syncDirectory() }
        }
    }

    /// Every dead letter, oldest first. A line that cannot be read is reported, not skipped.
    public func read() throws(SpoolError) -> [DeadLetter] {
        try locked { () throws(SpoolError) -> [DeadLetter] in try readUnlocked() }
    }

    /// Removes the dead letters whose id is in `ids` (every one when nil) and returns
    /// how many were removed. The file is rewritten beside and renamed over the old one.
    @discardableResult
    public func remove(ids: Set<String>?) throws(SpoolError) -> Int {
        try locked { () throws(SpoolError) -> Int in
            let letters = try readUnlocked()
            let kept = letters.filter { letter in ids.map { !$0.contains(letter.id) } ?? false }
            guard kept.count < letters.count else { return 0 }
            var bytes: [UInt8] = []
            for letter in kept {
                do {
                    bytes += Array(try Self.encoder.encode(letter)) + [0x0A]
                } catch {
                    throw SpoolError(.io, "cannot encode a dead letter: \(error)")
                }
            }
            let temporary = path + ".tmp"
            let descriptor = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard descriptor >= 0 else { throw Self.failure("cannot create \(temporary)") }
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            let synced = fsync(descriptor) == 0
            Glibc.close(descriptor)
            guard written == bytes.count, synced else {
                unlink(temporary)
                throw Self.failure("cannot write \(temporary) (free disk space, then retry)")
            }
            guard rename(temporary, path) == 0 else { throw Self.failure("cannot rename \(temporary)") }
            try syncDirectory()
            return letters.count - kept.count
        }
    }

    // MARK: Files

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    private func readUnlocked() throws(SpoolError) -> [DeadLetter] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else { throw Self.failure("cannot read \(path)") }
        var letters: [DeadLetter] = []
        for (number, line) in data.split(separator: 0x0A).enumerated() {
            do {
                letters.append(try Self.decoder.decode(DeadLetter.self, from: Data(line)))
            } catch {
                throw SpoolError(.corrupt, "\(path) line \(number + 1) is not a dead letter; move the file aside to inspect it")
            }
        }
        return letters
    }

    /// Runs `body` holding the exclusive lock shared with other processes.
    private func locked<Result>(_ body: () throws(SpoolError) -> Result) throws(SpoolError) -> Result {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SpoolError(.io, "cannot create the spool folder \(directory): \(error)")
        }
        let descriptor = Glibc.open(lockPath, O_RDWR | O_CREAT, 0o644)
        guard descriptor >= 0 else { throw Self.failure("cannot open \(lockPath)") }
        defer { Glibc.close(descriptor) }  // closing releases the lock
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else { throw Self.failure("cannot lock \(lockPath)") }
        }
        return try body()
    }

    private func syncDirectory() throws(SpoolError) {
        let descriptor = Glibc.open(directory, O_RDONLY | O_DIRECTORY)
        guard descriptor >= 0 else { throw Self.failure("cannot open \(directory)") }
        defer { Glibc.close(descriptor) }
        guard fsync(descriptor) == 0 else { throw Self.failure("cannot fsync \(directory)") }
    }

    private static func failure(_ what: String) -> SpoolError {
        SpoolError(.io, "\(what): \(String(cString: strerror(errno)))")
    }
}
