import Foundation
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

@Suite("Aggregator: a message the database refuses is retried, then parked")
struct RetryTests {
    @Test("the failing message is split from its batch, goes round the TTL retry queues, and is parked after its last attempt")
    func retriedThenParked() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        // A failure the validator cannot foresee (a plain exception: not the data's fault).
        let metric = try await harness.installRefusal("poison", raise: "'refused by the test: %', NEW.metric")
        try await withCleanup {
            let time = TestClock.now().addingTimeInterval(-60)
            let good = "[\(usageEventJSON(id: "good-1", tenant: tenant, time: time)), \(usageEventJSON(id: "good-2", tenant: tenant, time: time))]"
            let poison = "[\(usageEventJSON(id: "poison-a", tenant: tenant, metric: metric, time: time, metadata: #"{"k": "x"}"#))]"
            let lastChance = "[\(usageEventJSON(id: "poison-b", tenant: tenant, metric: metric, time: time, metadata: #"{"k": "y"}"#))]"
            // The poison first, the good message behind it: one batch, split to find the culprit.
            try await harness.publish([poison, good])
            try await harness.publishRaw(lastChance, headers: [HeaderName.attempt: .int(6)])
            let aggregator = try harness.startAggregator(consumers: 1)
            try await harness.waitUntil("the good events counted, the last-chance message parked, the other in its second wait") {
                let counts = try await harness.storedCounts([tenant])
                let parked = try await harness.depth(".parked")
                let second = try await harness.depth(".retry.30s")
                return counts[tenant] == 2 && parked == 1 && second == 1
            }
            #expect(await aggregator.stop() == 0)
            let listing = try await TestEnvironment.run(
                AggregatorHarness.binary, ["dlq", "list"],
                environment: [
                    "AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL, "AGGREGATOR_QUEUE": harness.queue,
                ])
            #expect(listing.output.contains("failed 6 times"))
            #expect(listing.output.contains("refused by the test"))
        } cleanup: {
            try await harness.removeRefusal(metric)
            try await harness.tearDown()
        }
    }
}
