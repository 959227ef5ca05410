import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging
import TallyOutbox
import TallyStore
import TallyTestSupport
import Testing

/// The outbox's one sweeper, against the real servers: a message committed to the outbox and
/// left there (as a crash between commit and publish leaves it) reaches the broker with its
/// message id and is marked published, while `OutboxRelayService` runs as a Service.
@Suite("Outbox sweeper")
struct OutboxRelayServiceTests {
    let logger = Logger(label: "test.outbox")

    @Test("a message left in the outbox is published by the sweeper, once, and marked published")
    func leftoverIsSent() async throws {
        let id = UUID().uuidString.lowercased()
        let exchange = "test.outbox.\(id)"
        let amqp = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-outbox")
        let listener = try await AMQPConnection.connect(configuration: amqp, logger: logger)
        try await listener.openChannel(1)
        try await listener.declareExchange(exchange, type: .fanout, durable: false)
        try await listener.declareQueue(exchange, durable: false, exclusive: true)
        try await listener.bindQueue(exchange, exchange: exchange, routingKey: "")
        try await listener.consume(exchange)
        let database = try PostgresConfiguration(url: TestEnvironment.databaseURL)
        let pool = PostgresPool(configuration: database, size: 1, logger: logger)
        let messageID = "test-outbox-\(id)"
        // Committed, never drained: what a worker that died right after its commit leaves.
        let added = try await pool.withTransaction {
            try OutboxRecords.add(exchange: exchange, routingKeys: [""], messageIDs: [messageID], bodies: [#"{"n": 1}"#], on: $0)
        }
        #expect(added == 1)

        let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
        let sweeper = OutboxRelayService(relay: OutboxRelay(publisher: publisher, logger: logger), database: database, logger: logger)
        var configuration = ServiceGroupConfiguration(services: [sweeper], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(60)
        let group = ServiceGroup(configuration: configuration)
        let running = Task { try await group.run() }

        var received: [String] = []
        let deadline = ContinuousClock.now + .seconds(120)  // a guard against hanging, not a bound
        while received.isEmpty, ContinuousClock.now < deadline {
            if let delivery = try await listener.nextDelivery(timeout: .seconds(1)) {
                received.append(delivery.properties.messageID ?? "")
                try await listener.ack(delivery.deliveryTag)
            }
        }
        // Anything sent twice would follow within a few sweeps.
        while let again = try await listener.nextDelivery(timeout: .seconds(2)) {
            received.append(again.properties.messageID ?? "")
            try await listener.ack(again.deliveryTag)
        }
        let published = try await pool.query("SELECT published_at IS NOT NULL FROM outbox WHERE message_id = $1", [messageID])
        await group.triggerGracefulShutdown()
        let shutdown = await running.result
        await publisher.close()
        try? await pool.query("DELETE FROM outbox WHERE message_id = $1", [messageID])
        await pool.close()
        try? await listener.deleteExchange(exchange)
        await listener.close()

        #expect(received == [messageID])
        #expect(published.first?.text(0) == "t")
        #expect(throws: Never.self, "the sweeper stops at a graceful shutdown") { try shutdown.get() }
    }
}
