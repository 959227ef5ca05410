import CurlClient
import Foundation
import TallyTestSupport
import Testing
import UsageEvents

/// `producer publish FILE` against a real `producer serve`, with the real binaries.
@Suite("producer publish")
struct PublishCommandTests {
    var producer: String { TestEnvironment.repositoryRoot + "/.build/debug/producer" }

    func serve(_ fixture: IngestFixture) async throws -> (ChildProcess, Int) {
        let process = try ChildProcess(
            producer, ["serve", "--host", "127.0.0.1", "--port", "0"],
            environment: [
                "AMQP_URL": TestEnvironment.amqpURL, "TALLY_SPOOL_DIR": fixture.spoolDirectory,
                "BILLING_ADMIN_TOKEN": fixture.adminToken, "LOG_FORMAT": "text",
            ],
            log: fixture.spoolDirectory + ".log")
        let port = try await process.listeningPort()
        let client = try HTTPClient()
        let deadline = ContinuousClock.now + .seconds(60)
        while (try? await client.send(.init(url: "http://127.0.0.1:\(port)/healthz")))?.isSuccess != true {
            try #require(ContinuousClock.now < deadline, "producer serve never became healthy")
            try await Task.sleep(for: .milliseconds(100))
        }
        return (process, port)
    }

    func lines(_ fixture: IngestFixture, count: Int, prefix: String) -> [String] {
        let time = RFC3339.format(TestClock.now().addingTimeInterval(-30))
        return (0..<count).map {
            #"{"id": "\#(prefix)-\#($0)", "type": "api_calls", "quantity": 1, "time": "\#(time)"}"#
        }
    }

    @Test("a file of 2,500 events is sent in batches, every event reaches the queue once, exit 0")
    func publishesFile() async throws {
        let fixture = try await IngestFixture.make()
        let (server, port) = try await serve(fixture)
        defer { server.kill(SIGTERM) }
        let file = fixture.spoolDirectory + ".ndjson"
        let events = lines(fixture, count: 2_500, prefix: "publish")
        try (events.joined(separator: "\n") + "\n\n").write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await TestEnvironment.run(
            producer, ["publish", file],
            environment: ["TALLY_INGEST_URL": "http://127.0.0.1:\(port)", "TALLY_API_KEY": fixture.apiKey])
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output.contains("2500 accepted, 0 refused"))
        let received = try await fixture.receivedEvents(expected: events.count)
        #expect(Set(received.ids.keys) == Set((0..<2_500).map { "publish-\($0)" }))
        #expect(received.ids.values.allSatisfy { $0 == 1 })
        try await fixture.tearDown()
    }

    @Test("a bad line refuses its batch with the line and field named; other batches stay accepted; exit 1")
    func refusedBatch() async throws {
        let fixture = try await IngestFixture.make()
        let (server, port) = try await serve(fixture)
        defer { server.kill(SIGTERM) }
        let file = fixture.spoolDirectory + ".ndjson"
        var events = lines(fixture, count: 20, prefix: "mixed")
        events[14] = #"{"id": "mixed-14", "type": "api_calls", "quantity": -3, "time": "2026-11-24T00:00:00Z"}"#
        // A blank line before the second batch: its first event is the file's line 12.
        try (events[..<10].joined(separator: "\n") + "\n\n" + events[10...].joined(separator: "\n")).write(
            toFile: file, atomically: true, encoding: .utf8)
        let result = try await TestEnvironment.run(
            producer, ["publish", file, "--batch-size", "10"],
            environment: ["TALLY_INGEST_URL": "http://127.0.0.1:\(port)", "TALLY_API_KEY": fixture.apiKey])
        #expect(result.status == 1)
        #expect(result.output.contains("10 accepted, 10 refused"))
        #expect(result.errors.contains("10 event(s) from line 12 refused (HTTP 400)"), "\(result.errors)")
        #expect(result.errors.contains("events[4].quantity"))
        let received = try await fixture.receivedEvents(expected: 10)
        #expect(Set(received.ids.keys) == Set((0..<10).map { "mixed-\($0)" }))
        try await fixture.tearDown()
    }

    @Test("an ingest that cannot be reached leaves the events 'not sent', not 'refused', and says to publish again; exit 1")
    func unreachableIngest() async throws {
        let fixture = try await IngestFixture.make()
        let file = fixture.spoolDirectory + ".ndjson"
        try (lines(fixture, count: 3, prefix: "unsent").joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        // A free port nobody listens on: every attempt is refused at connect.
        let port = try TestEnvironment.freePort()
        let result = try await TestEnvironment.run(
            producer, ["publish", file, "--attempts", "2"],
            environment: ["TALLY_INGEST_URL": "http://127.0.0.1:\(port)", "TALLY_API_KEY": fixture.apiKey])
        #expect(result.status == 1)
        #expect(result.output.contains("0 accepted, 0 refused, 3 not sent"), "\(result.output)")
        #expect(result.output.contains("Publish the file again"), "\(result.output)")
        #expect(result.errors.contains("3 event(s) from line 1 not sent:") && result.errors.contains("TALLY_INGEST_URL"), "\(result.errors)")
        try await fixture.tearDown()
    }

    @Test("--help names every setting it reads; --attempts 0 and a directory are usage errors, not a crash or an empty success")
    func help() async throws {
        let result = try await TestEnvironment.run(producer, ["publish", "--help"])
        #expect(result.status == 0)
        for key in ["TALLY_INGEST_URL", "TALLY_API_KEY", "BILLING_ADMIN_TOKEN"] { #expect(result.output.contains(key)) }
        let environment = ["TALLY_INGEST_URL": "http://127.0.0.1:9", "TALLY_API_KEY": "tally_x"]
        for (arguments, says) in [
            (["publish", "/dev/null", "--attempts", "0"], "--attempts must be 1 to 100"),
            (["backfill", "/dev/null", "--attempts=-1"], "--attempts must be 1 to 100"),
            (["publish", NSTemporaryDirectory()], "is a directory"),
        ] {
            let refused = try await TestEnvironment.run(producer, arguments, environment: environment)
            #expect(refused.status == 64, "\(arguments): \(refused.status) \(refused.errors)")
            #expect(refused.errors.contains(says), "\(arguments): \(refused.errors)")
        }
    }
}
