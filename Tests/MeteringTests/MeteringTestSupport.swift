import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

/// A private queue, bound to a topic exchange of its own, that collects one tenant's
/// events; and spools in temporary folders.
///
/// The test publishes to the probe's exchange (`DurablePublisher`'s `exchange:`), not to
/// `usage`: other tests bind queues to `usage` and delete them when they finish, and the
/// broker nacks a message routed to a queue being deleted — the publisher then sends the
/// batch again, which a test counting deliveries would see twice. On an exchange of its
/// own, the broker's answers depend on the test alone, and its events never reach the
/// running Aggregator.
struct UsageQueueProbe {
    let queue: String
    let connection: AMQPConnection
    /// The probe's exchange, deleted with it.
    let exchange: String
    static let logger = Logger(label: "test.metering")

    static func make() async throws -> UsageQueueProbe {
        let queue = "test.metering.\(UUID().uuidString.prefix(8).lowercased())"
        let connection = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: queue), logger: logger)
        try await connection.openChannel(1)
        let exchange = queue
        try await connection.declareExchange(exchange, type: .topic, durable: false)
        try await connection.declareQueue(queue, durable: false, exclusive: true)  // gone with the connection, even if the test dies
        try await connection.bindQueue(queue, exchange: exchange, routingKey: "usage.#")
        try await connection.setPrefetch(1000)
        return UsageQueueProbe(queue: queue, connection: connection, exchange: exchange)
    }

    /// Event ids of `tenant` seen on the queue, with how often each was seen; stops
    /// once `expected` distinct ids arrived or nothing came for `quiet`.
    func collect(tenant: UUID, expected: Int, quiet: Duration = .seconds(10)) async throws -> (ids: [String: Int], maxBatch: Int) {
        try await connection.consume(queue)
        var ids: [String: Int] = [:]
        var maxBatch = 0
        while ids.count < expected, let delivery = try await connection.nextDelivery(timeout: quiet) {
            let events = try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [[String: Any]] ?? []
            maxBatch = max(maxBatch, events.count)
            for event in events where event["tenant_id"] as? String == tenant.uuidString.lowercased() {
                ids[event["id"] as? String ?? "?", default: 0] += 1
            }
            try await connection.ack(delivery.deliveryTag)
        }
        return (ids, maxBatch)
    }

    /// The messages carrying `tenant`'s events: each message's event ids and headers,
    /// until `expected` events arrived or nothing came for `quiet`.
    func messages(tenant: UUID, expected: Int, quiet: Duration = .seconds(10)) async throws
        -> [(ids: [String], headers: [String: AMQPFieldValue])]
    {
        try await connection.consume(queue)
        var messages: [(ids: [String], headers: [String: AMQPFieldValue])] = []
        while messages.map(\.ids.count).reduce(0, +) < expected, let delivery = try await connection.nextDelivery(timeout: quiet) {
            let events = try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [[String: Any]] ?? []
            let ids = events.filter { $0["tenant_id"] as? String == tenant.uuidString.lowercased() }.compactMap { $0["id"] as? String }
            if !ids.isEmpty { messages.append((ids, delivery.properties.headers)) }
            try await connection.ack(delivery.deliveryTag)
        }
        return messages
    }

    func delete() async throws {
        try await connection.deleteQueue(queue)
        try await connection.deleteExchange(exchange)
        await connection.close()
    }
}

enum TestSpool {
    static func directory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tally-spool-\(UUID().uuidString)").path
    }

    /// An AMQP configuration nobody answers (a loopback port with no listener).
    static var unreachableBroker: AMQPConfiguration {
        var configuration = AMQPConfiguration(host: "127.0.0.1", port: 1, connectionName: "tally-test-unreachable")
        configuration.connectionTimeout = .seconds(1)
        return configuration
    }

    static var broker: AMQPConfiguration {
        get throws { try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-meter") }
    }
}
