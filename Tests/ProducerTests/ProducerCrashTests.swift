import CurlClient
import Foundation
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

/// The real `producer serve` binary, SIGKILLed right after it answered 202.
@Suite("Producer crash")
struct ProducerCrashTests {
    var producerBinary: String { TestEnvironment.repositoryRoot + "/.build/debug/producer" }

    /// Starts `producer serve` on a port the kernel picks; returns it with the port.
    func start(amqpURL: String, spool: String, adminToken: String) async throws -> (ChildProcess, port: Int) {
        let process = try ChildProcess(
            producerBinary, ["serve", "--host", "127.0.0.1", "--port", "0"],
            environment: [
                "AMQP_URL": amqpURL, "TALLY_SPOOL_DIR": spool, "BILLING_ADMIN_TOKEN": adminToken, "LOG_FORMAT": "text",
            ],
            log: spool + ".log")
        return (process, try await process.listeningPort())
    }

    func waitUntilHealthy(_ client: HTTPClient, port: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let response = try? await client.send(.init(url: "http://127.0.0.1:\(port)/healthz")), response.isSuccess { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("producer on port \(port) never became healthy")
    }

    @Test("a batch answered 202 from the spool survives SIGKILL and is delivered after restart")
    func killAfterAccepted() async throws {
        let fixture = try await IngestFixture.make()
        let client = try HTTPClient()
        // First life: RabbitMQ unreachable, so the batch can only be made durable in the spool.
        let (offline, port) = try await start(
            amqpURL: "amqp://guest:guest@127.0.0.1:1/%2F?connection_timeout=1", spool: fixture.spoolDirectory,
            adminToken: fixture.adminToken)
        try await waitUntilHealthy(client, port: port)
        let time = RFC3339.format(TestClock.now().addingTimeInterval(-30))
        let events = (0..<1500).map {
            #"{"id": "crash-\#($0)", "tenant_id": "\#(fixture.tenant.id.uuidString.lowercased())", "type": "api_calls", "quantity": 1, "time": "\#(time)"}"#
        }
        let response = try await client.send(
            .init(
                method: .post, url: "http://127.0.0.1:\(port)/v1/events",
                headers: ["Authorization": "Bearer \(fixture.adminToken)", "Content-Type": "application/x-ndjson"],
                body: Data(events.joined(separator: "\n").utf8)))
        #expect(response.status == 202)
        #expect(String(decoding: response.body, as: UTF8.self).contains(#""durability":"spooled""#))
        offline.kill(SIGKILL)

        // Second life: the broker is there; the spool drains.
        let (online, _) = try await start(
            amqpURL: TestEnvironment.amqpURL, spool: fixture.spoolDirectory, adminToken: fixture.adminToken)
        defer { online.kill(SIGTERM) }
        let received = try await fixture.receivedEvents(expected: events.count, quiet: .seconds(20))
        #expect(received.ids.count == events.count)
        #expect(Set(received.ids.keys) == Set((0..<1500).map { "crash-\($0)" }))
        try await fixture.tearDown()
    }
}
