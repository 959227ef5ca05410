import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

/// The metering library across a real RabbitMQ outage (run alone, in the outage phase).
extension OutageSuite {
    @Suite("Metering across a broker outage (outage)")
    struct BrokerOutageMeteringTests {
        let logger = Logger(label: "test.outage.metering")

        @Test("50,000 events tracked while RabbitMQ is stopped mid-stream all arrive; none is lost, ids resent after a lost confirm are few")
        func trackThroughOutage() async throws {
            let broker = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-outage-probe")
            let queue = "test.outage.usage.\(UUID().uuidString.prefix(8).lowercased())"
            let setup = try await AMQPConnection.connect(configuration: broker, logger: logger)
            try await setup.openChannel(1)
            try await Topology.tally.declare(on: setup)
            try await setup.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
            try await setup.bindQueue(queue, exchange: ExchangeName.usage, routingKey: "usage.#")
            await setup.close()

            let tenant = UUID()
            let spool = try await DiskSpool.open(
                directory: FileManager.default.temporaryDirectory.appendingPathComponent("outage-\(UUID())").path,
                maxBytes: 512 << 20)
            let counters = MeteringCounters()
            var publisherBroker = broker
            publisherBroker.connectionTimeout = .seconds(2)
            let publisher = DurablePublisher(
                configuration: publisherBroker, spool: spool, logger: logger, confirmTimeout: .seconds(3), counters: counters)
            let meter = Meter(publisher: publisher, counters: counters, logger: logger)
            async let running: Void = meter.run()

            var ids: [String] = []
            for _ in 0..<10_000 { ids.append(try meter.track(tenant: tenant, metric: "api_calls")) }
            try await TestEnvironment.ops("stop", "rabbitmq")
            // While the broker is down, track keeps returning: it never waits on the network.
            for _ in 0..<40_000 { ids.append(try meter.track(tenant: tenant, metric: "api_calls")) }
            // Give the publisher time to find the broker gone and spool what it holds.
            let spoolDeadline = ContinuousClock.now + .seconds(60)
            while meter.pendingCount > 0, ContinuousClock.now < spoolDeadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(meter.pendingCount == 0, "events still in memory after the broker went away")
            try await TestEnvironment.ops("start", "rabbitmq")

            let consumer = try await AMQPConnection.connectRetrying(
                configuration: broker, logger: logger,
                setUp: { connection in
                    try await connection.openChannel(1)
                    try await connection.setPrefetch(1000)
                    try await connection.consume(queue)
                })
            var seen: [String: Int] = [:]
            let own = tenant.uuidString.lowercased()
            while seen.count < ids.count, let delivery = try await consumer.nextDelivery(timeout: .seconds(30)) {
                let events = try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [[String: Any]] ?? []
                for event in events where event["tenant_id"] as? String == own {
                    seen[event["id"] as? String ?? "?", default: 0] += 1
                }
                try await consumer.ack(delivery.deliveryTag, multiple: true)
            }
            meter.shutdown()
            await running
            #expect(Set(seen.keys) == Set(ids), "missing \(Set(ids).subtracting(seen.keys).count) of \(ids.count)")
            let resent = seen.values.filter { $0 > 1 }.count
            // Events republished after an unconfirmed publish are the Aggregator's to dedup by id.
            #expect(resent <= 10_000, "\(resent) ids were delivered more than once")
            #expect(counters.snapshot.dropped == 0)
            #expect(counters.snapshot.spooled > 0)
            try await consumer.deleteQueue(queue)
        }
    }
}
