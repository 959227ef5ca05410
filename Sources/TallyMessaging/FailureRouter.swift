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

    /// After a failed attempt: retried later, or parked with `reason` after the last one.
    @discardableResult
    public func retryOrPark(_ delivery: Delivery, reason: String) async throws -> RetryPolicy.Decision {
        let attempt = delivery.properties.headers[HeaderName.attempt].flatMap { Int($0.stringValue) } ?? 1
        let decision = retry.next(afterFailedAttempt: attempt, queue: queue)
        switch decision {
        case .retry(let routingKey, let next):
            var properties = delivery.properties
            properties.headers[HeaderName.attempt] = .int(Int64(next))
            try await publisher.publish([
                OutgoingMessage(exchange: ExchangeName.retry, routingKey: routingKey, body: delivery.body, properties: properties, mandatory: true)
            ])
        case .park:
            try await park([delivery], reasons: ["failed \(attempt) times: \(reason)"])
        }
        return decision
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
