import Logging
import RabbitMQClient
import TallyMessaging

/// A work queue's parking lot (`QUEUE.parked`): the messages a worker gave up on, each
/// with its reason in `x-tally-park-reason`. What every worker's `dlq` command does
/// with it: count, look (without taking), replay onto the work queue, purge.
public struct ParkingLot: Sendable {
    /// A parked message as `dlq list` and `dlq show` print it.
    public struct Message: Sendable {
        public let messageID: String?
        public let reason: String
        public let body: [UInt8]
    }

    public let queue: String
    public let retry: RetryPolicy
    let amqp: AMQPConfiguration

    public init(queue: String, retry: RetryPolicy, amqp: AMQPConfiguration) {
        self.queue = queue
        self.retry = retry
        self.amqp = amqp
    }

    /// `QUEUE.parked`.
    public var name: String { retry.parkingQueue(for: queue) }

    /// How many messages are parked.
    public func count(on channel: AMQPConnection) async throws -> Int {
        Int(try await channel.declareQueue(name, passive: true))
    }

    /// Up to `limit` parked messages, oldest first, left where they are: they are read on
    /// a connection of their own that closes without acking, so the broker requeues them.
    /// The most messages one look sees: AMQP's largest prefetch (`dlq show` of a message past
    /// the first 2,000 said it was not parked).
    public static let maximumPeek = 65_535

    public func peek(limit: Int, logger: Logger) async throws -> [Message] {
        let peek = try await AMQPConnection.connect(configuration: amqp, logger: logger)
        do {
            let messages = try await read(limit: limit, on: peek)
            await peek.close()
            return messages
        } catch {
            await peek.close()
            throw error
        }
    }

    private func read(limit: Int, on peek: AMQPConnection) async throws -> [Message] {
        try await peek.openChannel(1)
        let count = Int(try await peek.declareQueue(name, passive: true))
        guard count > 0, limit > 0 else { return [] }
        // Up to 65,535 unacked at once, the most AMQP allows: `dlq replay --id` looks through
        // the whole parking lot (2,000 left later ids "not parked").
        try await peek.setPrefetch(UInt16(min(limit, Self.maximumPeek)))
        try await peek.consume(name)
        var messages: [Message] = []
        for _ in 0..<min(limit, count) {
            guard let delivery = try await peek.nextDelivery(timeout: .seconds(2)) else { break }
            messages.append(
                Message(
                    messageID: delivery.properties.messageID,
                    reason: delivery.properties.headers[HeaderName.parkReason]?.stringValue ?? "(no reason recorded)", body: delivery.body))
        }
        return messages
    }

    /// Moves parked messages back to the work queue (a fresh attempt count, the park reason
    /// dropped), acking each only after the broker confirmed its copy; returns how many.
    /// `only` names the messages to move by message id (every one when nil); see `sweep`.
    public func replay(only ids: Set<String>? = nil, on channel: AMQPConnection, publisher: ConfirmedPublisher) async throws -> Int {
        try await sweep(only: ids, on: channel, publisher: publisher) { delivery in
            var properties = delivery.properties
            properties.headers[HeaderName.parkReason] = nil
            properties.headers[HeaderName.attempt] = nil
            try await publisher.publish([
                OutgoingMessage(exchange: "", routingKey: queue, body: delivery.body, properties: properties, mandatory: true)
            ])
        }
    }

    /// Deletes parked messages for good (every one when `only` is nil); returns how many.
    public func purge(only ids: Set<String>? = nil, on channel: AMQPConnection, publisher: ConfirmedPublisher) async throws -> Int {
        guard let ids else { return Int(try await channel.purgeQueue(name)) }
        return try await sweep(only: ids, on: channel, publisher: publisher) { _ in }
    }

    /// Takes each message parked when it starts, once: `take` handles the chosen ones (all,
    /// or those whose message id is in `ids`); the others go back to the parking lot's tail
    /// unchanged (reason and all), each acked only after the broker confirmed its copy, so a
    /// crash midway duplicates a parked message at worst and loses none. Named ids that are
    /// not parked refuse the whole sweep before anything moves (a mistyped id would
    /// otherwise read as done).
    private func sweep(
        only ids: Set<String>?, on channel: AMQPConnection, publisher: ConfirmedPublisher,
        take: (Delivery) async throws -> Void
    ) async throws -> Int {
        let total = try await count(on: channel)
        if let ids {
            let parked = Set(try await peek(limit: total, logger: Logger(label: "dlq")).compactMap(\.messageID))
            let missing = ids.subtracting(parked).sorted()
            guard missing.isEmpty else {
                throw CommandFailure("not parked in \(name): \(missing.joined(separator: ", ")); `dlq list` shows what is")
            }
        }
        try await channel.setPrefetch(100)
        let consumer = try await channel.consume(name)
        var seen = 0
        var taken = 0
        while seen < total, let delivery = try await channel.nextDelivery(timeout: .seconds(2)) {
            seen += 1
            if let ids, !ids.contains(delivery.properties.messageID ?? "") {
                try await publisher.publish([
                    OutgoingMessage(exchange: "", routingKey: name, body: delivery.body, properties: delivery.properties, mandatory: true)
                ])
            } else {
                try await take(delivery)
                taken += 1
            }
            try await channel.ack(delivery.deliveryTag)
        }
        // The consumer ends before the session closes: the broker answers once the channel has
        // passed the acks above to the queue. (A quorum queue's count then lags by a moment:
        // `dlq list` right after a purge of 300 showed the last 8, gone seconds later.)
        try await channel.cancel(consumerTag: consumer)
        return taken
    }
}
