import Foundation
import Logging
import RabbitMQClient
import TallyMessaging

/// Feeds a `QuotaView` from the `quota.state` fanout exchange through a queue of
/// this process's own (exclusive, deleted with the connection), reconnecting with
/// backoff when the broker goes away. Malformed broadcasts are logged and skipped.
public struct QuotaStateListener: Sendable {
    let configuration: AMQPConfiguration
    let view: QuotaView
    let logger: Logger

    public init(configuration: AMQPConfiguration, view: QuotaView, logger: Logger) {
        self.configuration = configuration
        self.view = view
        self.logger = logger
    }

    /// Consumes until cancelled.
    public func run() async throws {
        let queue = "quota.state.listener.\(EventIDSuffix.random())"
        while !Task.isCancelled {
            let connection = try await AMQPConnection.connectRetrying(
                configuration: configuration, logger: logger,
                setUp: { connection in
                    try await connection.openChannel(1)
                    try await connection.declareExchange(ExchangeName.quotaState, type: .fanout)
                    try await connection.declareQueue(queue, durable: false, exclusive: true)
                    try await connection.bindQueue(queue, exchange: ExchangeName.quotaState, routingKey: "")
                    try await connection.setPrefetch(500)
                    try await connection.consume(queue)
                })
            do {
                try await consume(connection)
            } catch let error as AMQPError where error.needsReconnect {
                logger.warning("quota state feed lost; reconnecting", metadata: ["error": "\(error)"])
            }
            await connection.close()
        }
    }

    private func consume(_ connection: AMQPConnection) async throws {
        while !Task.isCancelled {
            guard let delivery = try await connection.nextDelivery(timeout: .milliseconds(500)) else { continue }
            do {
                for state in try QuotaState.decodeAll(delivery.body) { view.apply(state) }
            } catch {
                logger.error("malformed quota state broadcast skipped", metadata: ["error": "\(error)"])
            }
            try await connection.ack(delivery.deliveryTag)
        }
    }
}

enum EventIDSuffix {
    static func random() -> String { String(UUID().uuidString.prefix(8)).lowercased() }
}
