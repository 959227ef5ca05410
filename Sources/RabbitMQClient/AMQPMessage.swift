import Foundation

/// A value in an AMQP field table (message headers, queue arguments).
public enum AMQPFieldValue: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)

    /// The value as text, whatever its kind.
    public var stringValue: String {
        switch self {
        case .string(let text): text
        case .int(let number): String(number)
        case .bool(let flag): String(flag)
        }
    }
}

/// The AMQP basic properties Tally uses.
public struct AMQPProperties: Sendable, Hashable {
    public var contentType: String?
    public var messageID: String?
    public var correlationID: String?
    /// Delivery mode 2: written to disk by the broker (SPEC §3).
    public var persistent: Bool
    /// Seconds since 1970.
    public var timestamp: Int64?
    public var headers: [String: AMQPFieldValue]
    /// Per-message TTL in milliseconds, as text (AMQP's `expiration`).
    public var expiration: String?

    public init(
        contentType: String? = nil, messageID: String? = nil, correlationID: String? = nil,
        persistent: Bool = true, timestamp: Int64? = nil, headers: [String: AMQPFieldValue] = [:],
        expiration: String? = nil
    ) {
        self.contentType = contentType
        self.messageID = messageID
        self.correlationID = correlationID
        self.persistent = persistent
        self.timestamp = timestamp
        self.headers = headers
        self.expiration = expiration
    }
}

/// A message to publish.
public struct OutgoingMessage: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var properties: AMQPProperties
    /// Ask the broker to return the message when no queue is bound for it.
    public var mandatory: Bool

    public init(
        exchange: String, routingKey: String, body: [UInt8], properties: AMQPProperties = AMQPProperties(),
        mandatory: Bool = true
    ) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
    }
}

/// What became of one published message.
public enum PublishOutcome: Sendable, Equatable {
    /// The broker took responsibility for it (persisted/replicated as the queue requires).
    case confirmed
    /// The broker refused it: a queue at its length limit with `x-overflow: reject-publish`
    /// (which refuses any message bigger than `x-max-length-bytes`), or an internal error.
    case nacked
    /// No queue was bound for it (`mandatory`), e.g. 312 NO_ROUTE.
    case returned(replyCode: UInt16, replyText: String)
}

/// A message delivered to a consumer; ack, nack or reject it by `deliveryTag`.
public struct Delivery: Sendable {
    public let channel: UInt16
    public let deliveryTag: UInt64
    public let redelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let properties: AMQPProperties
    /// The message's bytes; a worker may drop them once it has read them (`releaseBody`).
    public private(set) var body: [UInt8]

    /// Drops the body (its memory is freed once nothing else holds it); the delivery is
    /// still what to ack, nack or reject by.
    public mutating func releaseBody() {
        body = []
    }

    /// A delivery as the broker would make it (tests hand these to a worker's handler).
    public init(
        channel: UInt16 = 1, deliveryTag: UInt64, redelivered: Bool = false, exchange: String = "", routingKey: String = "",
        properties: AMQPProperties = AMQPProperties(), body: [UInt8]
    ) {
        self.channel = channel
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.properties = properties
        self.body = body
    }
}

/// An exchange type.
public enum ExchangeType: String, Sendable, Codable {
    case direct, fanout, topic, headers
}
