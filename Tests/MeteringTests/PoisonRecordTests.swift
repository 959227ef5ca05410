import Foundation
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

@testable import DiskSpool
@testable import Metering

@Suite("Spooled batches the broker refuses")
struct PoisonRecordTests {
    @Test("the retry delay doubles from the initial delay and stops at the cap")
    func backoff() {
        let policy = RefusalPolicy(maxAttempts: 10, initialDelay: .milliseconds(200), maxDelay: .seconds(1))
        #expect(
            (1...6).map { policy.delay(afterAttempts: $0) } == [
                .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1), .seconds(1),
            ])
    }

    @Test("a refused record is retried alone until its last attempt, then set aside; settling forgets it")
    func refusalDecisions() {
        let policy = RefusalPolicy(maxAttempts: 3, initialDelay: .milliseconds(100), maxDelay: .seconds(5))
        var refusals = SpoolRefusals(policy: policy)
        let poison = SpoolPosition(segment: 1, offset: 100)
        let next = SpoolPosition(segment: 1, offset: 200)
        #expect(!refusals.publishesAlone)
        #expect(refusals.refused(poison) == .retry(after: .milliseconds(100), attempt: 1))
        #expect(refusals.publishesAlone)
        #expect(refusals.refused(poison) == .retry(after: .milliseconds(200), attempt: 2))
        #expect(refusals.refused(poison) == .setAside(attempts: 3))
        #expect(!refusals.publishesAlone)
        // A different record starts its own count; settling past it clears it.
        #expect(refusals.refused(next) == .retry(after: .milliseconds(100), attempt: 1))
        refusals.settled(through: next)
        #expect(!refusals.publishesAlone)
        #expect(refusals.refused(next) == .retry(after: .milliseconds(100), attempt: 1))
    }

    @Test("a publish of several records refused as a whole is followed by one-at-a-time publishes up to its last record")
    func isolation() {
        var refusals = SpoolRefusals(policy: RefusalPolicy())
        refusals.refusedTogether(through: SpoolPosition(segment: 1, offset: 500))
        #expect(refusals.publishesAlone)
        refusals.settled(through: SpoolPosition(segment: 1, offset: 300))
        #expect(refusals.publishesAlone)
        refusals.settled(through: SpoolPosition(segment: 1, offset: 500))
        #expect(!refusals.publishesAlone)
    }

    /// A classic queue with `x-max-length-bytes` and `x-overflow: reject-publish` makes
    /// the broker nack any message bigger than the limit, even into an empty queue, while
    /// smaller ones are confirmed: a real, per-message refusal. The exchange is private,
    /// so nothing reaches the running Aggregator.
    @Test(
        "a batch the broker keeps nacking is set aside after its attempts, an unreadable record at once, and everything behind them drains",
        .timeLimit(.minutes(2)))
    func poisonIsSetAside() async throws {
        let name = "test.poison.\(UUID().uuidString.prefix(8).lowercased())"
        let broker = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: name), logger: UsageQueueProbe.logger)
        try await broker.openChannel(1)
        try await broker.declareExchange(name, type: .topic, durable: false)
        try await broker.declareQueue(
            name, durable: false, exclusive: true,
            arguments: ["x-max-length-bytes": .int(64 << 10), "x-overflow": .string("reject-publish")])
        try await broker.bindQueue(name, exchange: name, routingKey: "usage.#")
        let directory = TestSpool.directory()
        try await withCleanup {
            let tenant = UUID()
            let now = Date()
            func batch(_ label: String, events: Int = 1, padding: Int = 0) -> UsageBatch {
                UsageBatch(
                    events: (0..<events).map {
                        UsageEvent(
                            id: "\(label)-\($0)", tenantID: tenant, metric: "api_calls", quantity: 1, time: now,
                            metadata: padding > 0 ? ["padding": .string(String(repeating: "x", count: padding))] : [:])
                    })
            }
            let poison = batch("poison", events: 20, padding: 8000)  // ~160 KB: over the queue's limit
            #expect(poison.body.count > 64 << 10)
            let before = (0..<5).map { batch("before-\($0)") }
            let after = (0..<20).map { batch("after-\($0)") }
            let spool = try await DiskSpool.open(directory: directory, maxBytes: 64 << 20)
            try await spool.append(before.map(\.spoolRecord))
            try await spool.append([poison.spoolRecord, Array("not a usage batch".utf8)])
            try await spool.append(after.map(\.spoolRecord))

            let counters = MeteringCounters()
            let publisher = DurablePublisher(
                configuration: try TestSpool.broker, spool: spool, logger: UsageQueueProbe.logger, confirmTimeout: .seconds(30),
                counters: counters, refusalPolicy: RefusalPolicy(maxAttempts: 3, initialDelay: .milliseconds(1), maxDelay: .milliseconds(4)),
                exchange: name)
            async let running: Void = publisher.run()
            // The spool empties only once the nacked batch and the unreadable record are set aside.
            while spool.unacknowledgedRecordCount > 0 { try await Task.sleep(for: .milliseconds(10)) }
            publisher.finish()
            await running

            let expected = Set(
                try (before + after).flatMap { batch in
                    (try JSONSerialization.jsonObject(with: Data(batch.body)) as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                })
            let received = try await UsageQueueProbe(queue: name, connection: broker, exchange: name).collect(
                tenant: tenant, expected: expected.count)
            #expect(Set(received.ids.keys) == expected)
            #expect(counters.snapshot.deadLettered == 2)
            #expect(counters.snapshot.dropped == 0)

            let letters = try DeadLetterFile(spoolDirectory: directory).read()
            #expect(letters.count == 2)
            #expect(letters.first?.record == poison.spoolRecord)
            #expect(letters.first?.attempts == 3)
            #expect(letters.first?.reason.contains("nack") == true, "reason: \(letters.first?.reason ?? "none")")
            #expect(letters.last?.record == Array("not a usage batch".utf8))
            #expect(letters.last?.attempts == 1)
            await spool.close()
        } cleanup: {
            _ = try? await broker.deleteQueue(name)
            _ = try? await broker.deleteExchange(name)
            await broker.close()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}
