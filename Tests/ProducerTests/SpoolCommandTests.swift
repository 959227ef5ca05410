import Foundation
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

/// `producer spool dead-letter list|replay|purge`, with the real binary and broker.
@Suite("producer spool dead-letter")
struct SpoolCommandTests {
    var producer: String { TestEnvironment.repositoryRoot + "/.build/debug/producer" }

    /// One line of `dead-letter.ndjson`, written by hand: the file format is the contract.
    func letter(id: String, record: [UInt8], reason: String) -> String {
        #"{"attempts":5,"id":"\#(id)","reason":"\#(reason)","record":"\#(Data(record).base64EncodedString())","time":"2026-11-30T12:00:00Z"}"#
    }

    @Test("list shows each dead letter; replay publishes the readable ones and keeps the rest; purge needs --yes")
    func listReplayPurge() async throws {
        let fixture = try await IngestFixture.make()
        try await withCleanup {
            let tenant = fixture.tenant.id.uuidString.lowercased()
            let time = RFC3339.format(TestClock.now().addingTimeInterval(-30))
            let ids = (0..<3).map { "dead-letter-\(UUID().uuidString.prefix(8))-\($0)" }
            let body =
                "["
                + ids.map { #"{"id":"\#($0)","tenant_id":"\#(tenant)","type":"api_calls","quantity":"1","time":"\#(time)"}"# }
                .joined(separator: ",") + "]"
            let batch = Array("msg-\(UUID().uuidString)\n\n\(body)".utf8)
            try FileManager.default.createDirectory(atPath: fixture.spoolDirectory, withIntermediateDirectories: true)
            let lines = [
                letter(id: "letter-batch", record: batch, reason: "returned by the broker: 312 NO_ROUTE"),
                letter(id: "letter-garbage", record: Array("not a batch".utf8), reason: "unreadable spool record"),
            ]
            try (lines.joined(separator: "\n") + "\n").write(
                toFile: fixture.spoolDirectory + "/dead-letter.ndjson", atomically: true, encoding: .utf8)
            let spool = ["--spool", fixture.spoolDirectory]

            let list = try await TestEnvironment.run(producer, ["spool", "dead-letter", "list"] + spool)
            #expect(list.status == 0, "\(list.errors)")
            #expect(list.output.contains("2 dead letter(s)"))
            #expect(list.output.contains("letter-batch") && list.output.contains("3 event(s)") && list.output.contains("312 NO_ROUTE"))
            #expect(list.output.contains("letter-garbage") && list.output.contains("unreadable record of 11 bytes"))

            let unconfirmed = try await TestEnvironment.run(producer, ["spool", "dead-letter", "purge"] + spool)
            #expect(unconfirmed.status != 0)
            #expect(unconfirmed.errors.contains("--yes"))

            let replay = try await TestEnvironment.run(
                producer, ["spool", "dead-letter", "replay"] + spool, environment: ["AMQP_URL": TestEnvironment.amqpURL])
            #expect(replay.status == 1, "the unreadable letter stays, so not everything was replayed")
            #expect(replay.output.contains("replayed 1 of 1"), "\(replay.output) \(replay.errors)")
            let received = try await fixture.receivedEvents(expected: ids.count)
            #expect(Set(received.ids.keys) == Set(ids))
            let left = try await TestEnvironment.run(producer, ["spool", "dead-letter", "list"] + spool)
            #expect(left.output.contains("1 dead letter(s)") && !left.output.contains("letter-batch"))

            let purge = try await TestEnvironment.run(producer, ["spool", "dead-letter", "purge", "--id", "letter-garbage", "--yes"] + spool)
            #expect(purge.output.contains("purged 1 dead letter(s)"), "\(purge.output) \(purge.errors)")
            let empty = try await TestEnvironment.run(producer, ["spool", "dead-letter", "list"] + spool)
            #expect(empty.output.contains("0 dead letter(s)"))
        } cleanup: {
            try? await fixture.tearDown()
        }
    }
}
