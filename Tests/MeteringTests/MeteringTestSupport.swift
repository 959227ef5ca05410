import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

/// A private queue bound to `usage` (or to a private exchange) that collects one
/// tenant's events, and spools in temporary folders.
struct UsageQueueProbe {
    let queue: String
    let connection: AMQPConnection
    /// The exchange the queue is bound to; a private one is deleted with the probe.
    var exchange = ExchangeName.usage
    static let logger = Logger(label: "test.metering")

    /// With `privateExchange`, the queue is bound to a topic exchange of its own instead
    /// of `usage`, which no other test's queue is bound to: the broker's answers to a
    /// publish there (a nack when some queue on `usage` is deleted while a message is
    /// routed to it) then depend on this test alone.
    static func make(privateExchange: Bool = false) async throws -> UsageQueueProbe {
        let queue = "test.metering.\(UUID().uuidString.prefix(8).lowercased())"
        let connection = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: queue), logger: logger)
        try await connection.openChannel(1)
        try await Topology.tally.declare(on: connection)
        let exchange = privateExchange ? queue : ExchangeName.usage
        if privateExchange { try await connection.declareExchange(exchange, type: .topic, durable: false) }
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
        if exchange != ExchangeName.usage { try await connection.deleteExchange(exchange) }
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
