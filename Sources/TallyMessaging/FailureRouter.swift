import RabbitMQClient

/// Where a worker sends a message it could not process: to the retry queue of its next
/// attempt, or — once the attempts are used up, or when it can never work — to the
/// parking lot with the reason (RetryPolicy). The caller acks the original only after
/// this returned (the publish is confirmed), so nothing is lost in between.
public struct FailureRouter: Sendable {
    public let queue: String
    public let retry: RetryPolicy
    let publisher: ConfirmedPublisher

    public init(queue: String, retry: RetryPolicy = .standard, publisher: ConfirmedPublisher) {
        self.queue = queue
        self.retry = retry
        self.publisher = publisher
    }

    /// The attempt number a delivery carries (`x-tally-attempt`; 1 when absent).
    public static func attempt(of delivery: Delivery) -> Int {
        delivery.properties.headers[HeaderName.attempt].flatMap { Int($0.stringValue) } ?? 1
    }

    /// Sends `delivery` to wait in the retry queue `routingKey` before attempt `attempt`.
    public func retryLater(_ delivery: Delivery, routingKey: String, attempt: Int) async throws {
        var properties = delivery.properties
        properties.headers[HeaderName.attempt] = .int(Int64(attempt))
        try await publisher.publish([
            OutgoingMessage(exchange: ExchangeName.retry, routingKey: routingKey, body: delivery.body, properties: properties, mandatory: true)
        ])
    }

    /// Parks messages that can never be processed, each with its reason.
    public func park(_ deliveries: [Delivery], reasons: [String]) async throws {
        let messages = zip(deliveries, reasons).map { delivery, reason in
            var properties = delivery.properties
            properties.headers[HeaderName.parkReason] = .string(String(reason.prefix(1000)))
            return OutgoingMessage(
                exchange: ExchangeName.parking, routingKey: queue, body: delivery.body, properties: properties, mandatory: true)
        }
        try await publisher.publish(messages)
    }
}
