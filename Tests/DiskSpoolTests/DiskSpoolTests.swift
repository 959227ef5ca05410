import Foundation
import TallyTestSupport
import Testing

@testable import DiskSpool

@Suite("Disk spool")
struct DiskSpoolTests {
    func folder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("spool-test-\(UUID().uuidString)").path
    }

    func record(_ text: String) -> [UInt8] { Array(text.utf8) }

    func segments(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    }

    @Test("CRC-32 matches the standard check value")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test("records come back in order, and survive closing and reopening")
    func roundTripAndReopen() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
        for batch in 0..<10 {
            try await spool.append((0..<10).map { record("r\(batch)-\($0)") })
        }
        let expected = (0..<10).flatMap { batch in (0..<10).map { "r\(batch)-\($0)" } }
        #expect(try await spool.peek(maxRecords: 1000).map { String(decoding: $0.payload, as: UTF8.self) } == expected)
        await spool.close()
        let reopened = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
        #expect(reopened.unacknowledgedRecordCount == 100)
        #expect(try await reopened.peek(maxRecords: 1000).map { String(decoding: $0.payload, as: UTF8.self) } == expected)
    }

    @Test("acknowledged records never come back, even after reopening")
    func acknowledgement() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
        try await spool.append((0..<6).map { record("a\($0)") })
        let firstFour = try await spool.peek(maxRecords: 4)
        try await spool.acknowledge(through: try #require(firstFour.last).position)
        #expect(try await spool.peek(maxRecords: 10).map { String(decoding: $0.payload, as: UTF8.self) } == ["a4", "a5"])
        await spool.close()
        let reopened = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
        #expect(try await reopened.peek(maxRecords: 10).map { String(decoding: $0.payload, as: UTF8.self) } == ["a4", "a5"])
        try await reopened.append([record("a6")])
        #expect(try await reopened.peek(maxRecords: 10).map { String(decoding: $0.payload, as: UTF8.self) } == ["a4", "a5", "a6"])
    }

    @Test("a torn tail is cut off at every possible byte; whole records stay and appending continues")
    func tornTail() async throws {
        for cut in 1..<(12 + 5) {
            let directory = folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
            try await spool.append([record("whole-1"), record("whole-2")])
            try await spool.append([record("torn!")])
            await spool.close()
            let path = directory + "/" + segments(directory)[0]
            let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: UInt64(size - cut))
            try handle.close()
            let reopened = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
            #expect(
                try await reopened.peek(maxRecords: 10).map { String(decoding: $0.payload, as: UTF8.self) } == ["whole-1", "whole-2"], "cut \(cut)")
            try await reopened.append([record("after")])
            await reopened.close()
            let again = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
            #expect(
                try await again.peek(maxRecords: 10).map { String(decoding: $0.payload, as: UTF8.self) } == ["whole-1", "whole-2", "after"],
                "cut \(cut)")
        }
    }

    @Test("garbage appended after the last record is discarded")
    func garbageTail() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
        try await spool.append([record("kept")])
        await spool.close()
        let handle = try #require(FileHandle(forWritingAtPath: directory + "/" + segments(directory)[0]))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0x54, 0x53, 0x50, 0x31, 0, 0, 0, 3, 1, 2, 3, 4, 9, 9, 9]))
        try handle.close()
        let reopened = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20)
        #expect(try await reopened.peek(maxRecords: 10).map(\.payload) == [record("kept")])
    }

    @Test("damage inside an earlier segment is reported, not skipped")
    func corruptEarlierSegment() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20, segmentBytes: 64)
        for index in 0..<6 { try await spool.append([record("segment-record-\(index)-xxxxxxxxxxxxxxxx")]) }
        await spool.close()
        #expect(segments(directory).count > 2)
        let first = directory + "/" + segments(directory)[0]
        var bytes = try #require(FileManager.default.contents(atPath: first))
        bytes[bytes.count - 3] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: first))
        let error = await #expect(throws: SpoolError.self) { try await DiskSpool.open(directory: directory, maxBytes: 1 << 20) }
        #expect(error?.code == .corrupt)
    }

    @Test("a full spool refuses the whole batch and keeps what it has; acknowledging makes room")
    func full() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 100)
        try await spool.append([[UInt8](repeating: 1, count: 60)])
        let error = await #expect(throws: SpoolError.self) {
            try await spool.append([[UInt8](repeating: 2, count: 30), [UInt8](repeating: 3, count: 30)])
        }
        #expect(error?.code == .full)
        #expect(spool.unacknowledgedRecordCount == 1)
        let held = try await spool.peek(maxRecords: 10)
        #expect(held.map(\.payload) == [[UInt8](repeating: 1, count: 60)])
        try await spool.acknowledge(through: try #require(held.last).position)
        try await spool.append([[UInt8](repeating: 2, count: 30), [UInt8](repeating: 3, count: 30)])
        #expect(spool.unacknowledgedRecordCount == 2)
    }

    @Test("segments rotate, and fully acknowledged segment files are deleted")
    func rotation() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20, segmentBytes: 100)
        for index in 0..<20 { try await spool.append([record("rotating-record-number-\(index)")]) }
        #expect(segments(directory).count >= 5)
        let all = try await spool.peek(maxRecords: 100)
        try await spool.acknowledge(through: all[14].position)
        #expect(try await spool.peek(maxRecords: 100).count == 5)
        #expect(segments(directory).count <= 3)
        try await spool.acknowledge(through: try #require(all.last).position)
        #expect(spool.unacknowledgedRecordCount == 0)
        #expect(segments(directory).count <= 1)
    }

    @Test("concurrent appenders each land exactly once")
    func concurrentAppends() async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 8 << 20, segmentBytes: 4096)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<16 {
                group.addTask {
                    for index in 0..<50 { try await spool.append([Array("t\(task)-\(index)".utf8)]) }
                }
            }
            try await group.waitForAll()
        }
        let records = try await spool.peek(maxRecords: 10_000).map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(records.count == 800)
        #expect(Set(records).count == 800)
        for task in 0..<16 {
            let own = records.filter { $0.hasPrefix("t\(task)-") }
            #expect(own == (0..<50).map { "t\(task)-\($0)" })
        }
    }

    @Test(
        "an append that fails part-way on a full disk keeps nothing; later appends land where recorded, and reopening finds exactly the appended records",
        .enabled(if: SmallFilesystem.isPermitted, "needs permission to mount a tmpfs (run as root)"))
    func failedAppendOnFullDisk() async throws {
        let disk = try SmallFilesystem(bytes: 64 << 10)
        defer { disk.unmount() }
        let directory = disk.path + "/spool"
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 4 << 20)
        // Batches of three ~1 KB records: 3 KB never ends on a 4 KiB page boundary for
        // long, so the write that meets the full disk writes part of its batch first.
        func batch(_ number: Int) -> [[UInt8]] {
            (0..<3).map { Array("batch-\(number)-record-\($0)-".utf8) + [UInt8](repeating: UInt8(number % 251), count: 1000) }
        }
        var appended: [[UInt8]] = []
        var failure: SpoolError?
        var number = 0
        while failure == nil {
            number += 1
            do {
                try await spool.append(batch(number))
                appended += batch(number)
            } catch {
                failure = error
            }
        }
        #expect(failure?.code == .io)
        #expect(appended.count >= 30, "the 64 KiB disk filled after only \(appended.count) records")
        #expect(spool.unacknowledgedRecordCount == appended.count)
        // A second attempt on the still-full disk fails the same way and keeps nothing either.
        await #expect(throws: SpoolError.self) { try await spool.append(batch(number)) }

        try disk.resize(bytes: 256 << 10)
        for _ in 0..<10 {
            number += 1
            try await spool.append(batch(number))
            appended += batch(number)
        }
        #expect(try await spool.peek(maxRecords: 10_000).map(\.payload) == appended)
        await spool.close()

        let reopened = try await DiskSpool.open(directory: directory, maxBytes: 4 << 20)
        #expect(reopened.unacknowledgedRecordCount == appended.count)
        #expect(try await reopened.peek(maxRecords: 10_000).map(\.payload) == appended)
        let segment = directory + "/" + segments(directory)[0]
        let size = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        #expect(size == appended.reduce(0) { $0 + 12 + $1.count }, "bytes on disk that no record accounts for")
        await reopened.close()
    }

    @Test(
        "on a disk full to the last byte, acknowledging still works and frees whole segments, and appending resumes",
        .enabled(if: SmallFilesystem.isPermitted, "needs permission to mount a tmpfs (run as root)"))
    func acknowledgeOnFullDisk() async throws {
        let disk = try SmallFilesystem(bytes: 64 << 10)
        defer { disk.unmount() }
        let directory = disk.path + "/spool"
        let spool = try await DiskSpool.open(directory: directory, maxBytes: 4 << 20, segmentBytes: 8 << 10)
        var appended: [[UInt8]] = []
        var number = 0
        while true {
            number += 1
            let record = Array("record-\(number)-".utf8) + [UInt8](repeating: 7, count: 1500)
            do {
                try await spool.append([record])
            } catch {
                break
            }
            appended.append(record)
        }
        // Whatever room the failed append's truncation gave back is taken too.
        let fillerPath = disk.path + "/filler"
        _ = FileManager.default.createFile(atPath: fillerPath, contents: nil)
        let filler = try #require(FileHandle(forWritingAtPath: fillerPath))
        while (try? filler.write(contentsOf: Data(count: 512))) != nil {}
        try? filler.close()

        let held = try await spool.peek(maxRecords: 10_000)
        #expect(held.map(\.payload) == appended)
        let firstSegments = try #require(held.lastIndex { $0.position.segment <= held[0].position.segment + 1 })
        try await spool.acknowledge(through: held[firstSegments].position)
        let remaining = Array(appended[(firstSegments + 1)...])
        let more = Array("after-the-disk-filled".utf8)
        try await spool.append([more])
        await spool.close()

        let reopened = try await DiskSpool.open(directory: directory, maxBytes: 4 << 20, segmentBytes: 8 << 10)
        #expect(try await reopened.peek(maxRecords: 10_000).map(\.payload) == remaining + [more])
        await reopened.close()
    }

    /// Random appends, peeks, acknowledgements and reopenings against a plain array.
    @Test("random operations agree with an in-memory queue", arguments: [UInt64(7), 42, 2026])
    func randomAgainstReference(seed: UInt64) async throws {
        let directory = folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededRandom(seed: seed)
        var reference: [[UInt8]] = []
        var spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20, segmentBytes: 512)
        var counter = 0
        for step in 0..<400 {
            switch random.next() % 10 {
            case 0...4:
                let batch = (0..<Int(random.next() % 5 + 1)).map { _ -> [UInt8] in
                    counter += 1
                    return Array("rec-\(counter)-".utf8) + [UInt8](repeating: UInt8(counter % 251), count: Int(random.next() % 64))
                }
                try await spool.append(batch)
                reference += batch
            case 5...7:
                let peeked = try await spool.peek(maxRecords: Int(random.next() % 8 + 1))
                #expect(peeked.map(\.payload) == Array(reference.prefix(peeked.count)), "seed \(seed) step \(step)")
                if let last = peeked.last, random.next() % 2 == 0 {
                    try await spool.acknowledge(through: last.position)
                    reference.removeFirst(peeked.count)
                }
            default:
                await spool.close()
                spool = try await DiskSpool.open(directory: directory, maxBytes: 1 << 20, segmentBytes: 512)
            }
            #expect(spool.unacknowledgedRecordCount == reference.count, "seed \(seed) step \(step)")
        }
        #expect(try await spool.peek(maxRecords: 100_000).map(\.payload) == reference, "seed \(seed)")
    }
}
