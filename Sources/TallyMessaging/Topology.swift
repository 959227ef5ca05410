import Foundation
import RabbitMQClient

/// Tally's RabbitMQ topology as code: the one source of truth that every worker
/// declares at start-up (so a bare broker works) and that `ops/rabbitmq/definitions.json`
/// is exported from (a test keeps the two equal).
///
/// Every work queue is a quorum queue with at-least-once dead-lettering into its
/// parking lot (`Q.parked`) once `x-delivery-limit` redeliveries are exceeded, and
/// three delayed-retry queues (`Q.retry.5s`, …) whose expired messages flow back to Q.
public struct Topology: Sendable, Equatable {
    public var exchanges: [Exchange]
    public var queues: [Queue]
    public var bindings: [Binding]

    public init(exchanges: [Exchange], queues: [Queue], bindings: [Binding]) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    public struct Exchange: Sendable, Equatable {
        public let name: String
        public let type: ExchangeType

        public init(name: String, type: ExchangeType) {
            self.name = name
            self.type = type
        }
    }

    public struct Queue: Sendable, Equatable {
        public let name: String
        public let arguments: [String: AMQPFieldValue]

        public init(name: String, arguments: [String: AMQPFieldValue]) {
            self.name = name
            self.arguments = arguments
        }
    }

    public struct Binding: Sendable, Equatable {
        public let exchange: String
        public let queue: String
        public let routingKey: String

        public init(exchange: String, queue: String, routingKey: String) {
            self.exchange = exchange
            self.queue = queue
            self.routingKey = routingKey
        }
    }

    /// Tally's topology (SPEC §1, §3, §5).
    public static let tally = Topology.make(
        exchanges: [
            Exchange(name: ExchangeName.usage, type: .topic),
            Exchange(name: ExchangeName.billingEvents, type: .topic),
            Exchange(name: ExchangeName.quotaState, type: .fanout),
            Exchange(name: ExchangeName.commands, type: .direct),
        ],
        workQueues: [
            (QueueName.aggregatorUsage, ExchangeName.usage, RoutingKey.usageAll),
            (QueueName.invoicerCommands, ExchangeName.commands, RoutingKey.invoiceGenerate),
        ],
        retry: .standard
    ).adding(workQueue: QueueName.notifierEvents, boundTo: ExchangeName.billingEvents, routingKey: "#", retry: .notifications)

    /// A topology of the given exchanges and work queues, each work queue with its
    /// parking lot and retry queues, plus the shared `tally.retry` and `tally.parking` exchanges.
    public static func make(
        exchanges: [Exchange], workQueues: [(name: String, exchange: String, routingKey: String)], retry: RetryPolicy
    ) -> Topology {
        var topology = Topology(exchanges: exchanges, queues: [], bindings: [])
        for work in workQueues {
            topology = topology.adding(workQueue: work.name, boundTo: work.exchange, routingKey: work.routingKey, retry: retry)
        }
        return topology
    }

    /// This topology plus work queue `name` (bound to `exchange` with `routingKey` when
    /// an exchange is given), its parking lot and one retry queue per delay of `retry`.
    public func adding(workQueue name: String, boundTo exchange: String?, routingKey: String, retry: RetryPolicy) -> Topology {
        var topology = self
        for shared in [Exchange(name: ExchangeName.retry, type: .direct), Exchange(name: ExchangeName.parking, type: .direct)]
        where !topology.exchanges.contains(shared) {
            topology.exchanges.append(shared)
        }
        topology.queues.append(Queue(name: name, arguments: Self.workQueueArguments(name, retry: retry)))
        if let exchange {
            topology.bindings.append(Binding(exchange: exchange, queue: name, routingKey: routingKey))
        }
        let parked = retry.parkingQueue(for: name)
        topology.queues.append(Queue(name: parked, arguments: ["x-queue-type": .string("quorum")]))
        topology.bindings.append(Binding(exchange: ExchangeName.parking, queue: parked, routingKey: name))
        for delay in retry.delays {
            let retryQueue = retry.retryQueue(for: name, delay: delay)
            topology.queues.append(
                Queue(
                    name: retryQueue,
                    arguments: [
                        "x-queue-type": .string("quorum"),
                        "x-message-ttl": .int(delay.milliseconds),
                        "x-dead-letter-exchange": .string(""),
                        "x-dead-letter-routing-key": .string(name),
                        "x-dead-letter-strategy": .string("at-least-once"),
                        "x-overflow": .string("reject-publish"),
                    ]))
            topology.bindings.append(Binding(exchange: ExchangeName.retry, queue: retryQueue, routingKey: retryQueue))
        }
        return topology
    }

    static func workQueueArguments(_ name: String, retry: RetryPolicy) -> [String: AMQPFieldValue] {
        [
            "x-queue-type": .string("quorum"),
            "x-delivery-limit": .int(Int64(retry.deliveryLimit)),
            "x-dead-letter-exchange": .string(ExchangeName.parking),
            "x-dead-letter-routing-key": .string(name),
            "x-dead-letter-strategy": .string("at-least-once"),
            "x-overflow": .string("reject-publish"),
        ]
    }

    /// Declares everything on `connection` (channel `channel` must be open). Idempotent.
    public func declare(on connection: AMQPConnection, channel: UInt16 = 1) async throws {
        for exchange in exchanges {
            try await connection.declareExchange(exchange.name, type: exchange.type, channel: channel)
        }
        for queue in queues {
            try await connection.declareQueue(queue.name, arguments: queue.arguments, channel: channel)
        }
        for binding in bindings {
            try await connection.bindQueue(
                binding.queue, exchange: binding.exchange, routingKey: binding.routingKey, channel: channel)
        }
    }
}

/// Exchange names; workers use these constants, never string literals.
public enum ExchangeName {
    /// Usage events (SPEC §3), topic, routing key `usage.v1`.
    public static let usage = "usage"
    /// Billing events: `invoice.*`, `alert.*`, `quota.*`.
    public static let billingEvents = "billing.events"
    /// Usage-versus-quota broadcasts for the metering middleware.
    public static let quotaState = "quota.state"
    /// Commands to workers, e.g. invoice generation.
    public static let commands = "tally.commands"
    /// Where failed messages are sent to wait before another attempt.
    public static let retry = "tally.retry"
    /// Where messages go when they can never be processed, with the reason.
    public static let parking = "tally.parking"
}

/// Work queue names.
public enum QueueName {
    public static let aggregatorUsage = "aggregator.usage"
    public static let invoicerCommands = "invoicer.commands"
    public static let notifierEvents = "notifier.events"
}

/// Routing keys.
public enum RoutingKey {
    /// Usage batches of schema v1 (SPEC §3).
    public static let usageV1 = "usage.v1"
    static let usageAll = "usage.#"
    /// One invoice generation command.
    public static let invoiceGenerate = "invoice.generate"
}

/// Message headers Tally sets.
public enum HeaderName {
    /// The body's schema, `usage.v1` for usage batches (SPEC §3).
    public static let schema = "x-tally-schema"
    /// How many times processing was attempted (our own count: see RetryPolicy).
    public static let attempt = "x-tally-attempt"
    /// Why a message was parked.
    public static let parkReason = "x-tally-park-reason"
    /// W3C trace context of the caller.
    public static let traceparent = "traceparent"
}
