import Foundation
import Logging
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging

/// The work a `QueueWorker` does with one work queue's messages: the Aggregator's usage
/// batches, the Invoicer's commands, the Notifier's billing events.
public protocol QueueWorkHandler: Sendable {
    /// What one consumer holds for its whole life besides its AMQP connection (its own
    /// PostgreSQL connection, say).
    associatedtype Session: Sendable

    /// Opens a consumer's session, retrying while its dependencies are away; nil when
    /// `shouldStop` said to give up first (shutdown).
    func openSession(consumer: Int, logger: Logger, shouldStop: @escaping @Sendable () -> Bool) async -> Session?

    /// Closes what `openSession` opened.
    func closeSession(_ session: Session) async

    /// Does the work of `deliveries` (one batch, in queue order) and says what happened:
    /// which deliveries can never be processed (parked at once), and whether the work of
    /// the others failed. Never throws: every error is classified as a `WorkFailure`.
    func process(_ deliveries: [Delivery], in session: Session, logger: Logger) async -> WorkOutcome

    /// Called after the worker parked `delivery` (to record the failure where people look).
    func didPark(_ delivery: Delivery, reason: String, in session: Session, logger: Logger) async
}

extension QueueWorkHandler {
    public func didPark(_ delivery: Delivery, reason: String, in session: Session, logger: Logger) async {}
}

/// What processing one batch came to.
public struct WorkOutcome: Sendable {
    /// A delivery that can never be processed, and why.
    public struct Poisoned: Sendable, Equatable {
        public let deliveryTag: UInt64
        public let reason: String

        public init(deliveryTag: UInt64, reason: String) {
            self.deliveryTag = deliveryTag
            self.reason = reason
        }
    }

    /// Parked at once; the rest of the batch goes on.
    public var poisoned: [Poisoned]
    /// Why the work of the other deliveries failed; nil when it is done (committed).
    public var failure: WorkFailure?
    /// The size the handler asks for this consumer's next batch, from what it learned of
    /// this one; the worker keeps it within `QueueWorkerSettings.batchBytesRange`. Nil
    /// leaves the size as it is.
    public var nextBatchBytes: Int?

    public init(poisoned: [Poisoned] = [], failure: WorkFailure? = nil, nextBatchBytes: Int? = nil) {
        self.poisoned = poisoned
        self.failure = failure
        self.nextBatchBytes = nextBatchBytes
    }

    /// Everything done.
    public static let done = WorkOutcome()

    /// Nothing done, for this reason.
    public static func failed(_ failure: WorkFailure) -> WorkOutcome { WorkOutcome(failure: failure) }
}

/// Counts a worker reports as it settles messages (for `/metrics`); every method may be
/// called from any consumer at once.
public protocol QueueWorkerObserver: Sendable {
    /// An attempt at a batch failed (the batch is then retried, held, split, requeued or parked).
    func workFailed(_ failure: WorkFailure)
    /// Messages sent to a retry queue.
    func retried(_ count: Int)
    /// Messages sent to the parking lot.
    func parked(_ count: Int)
    /// Messages ready in the work queue (checked every few seconds by consumer 0).
    func queueDepth(_ depth: Int)
}

extension QueueWorkerObserver {
    public func workFailed(_ failure: WorkFailure) {}
    public func retried(_ count: Int) {}
    public func parked(_ count: Int) {}
    public func queueDepth(_ depth: Int) {}
}

/// An observer that counts nothing.
public struct SilentObserver: QueueWorkerObserver {
    public init() {}
}

/// How a `QueueWorker` consumes.
public struct QueueWorkerSettings: Sendable {
    /// The worker's role, in consumer tags and logs (`aggregator`).
    public var name: String
    /// The work queue; its retry queues and parking lot are named after it (`RetryPolicy`).
    public var queue: String
    /// Consumers in this process, each with its own AMQP connection and session.
    public var consumers = 2
    /// Unacked messages per consumer.
    public var prefetch: UInt16 = 16
    /// The most messages in one batch (at most `prefetch`); 1 settles each message alone.
    public var maxBatch = 1
    /// A batch is closed once its bodies reach this many bytes — or, when the handler asks
    /// for bigger batches (`WorkOutcome.nextBatchBytes`), up to `maxBatchBytes`.
    public var batchBytes = 4 << 20
    /// The most bytes a handler may ask for; at most `batchBytes` keeps every batch at
    /// `batchBytes`.
    public var maxBatchBytes = 0
    /// The sizes a batch may be closed at.
    public var batchBytesRange: ClosedRange<Int> { batchBytes...max(batchBytes, maxBatchBytes) }
    /// The longest wait for more messages after a batch's first one — only while the queue
    /// holds messages not yet sent to this consumer (a backlog beyond its prefetch): with
    /// none, a batch is what has arrived, at once, so a steady flow is seen within one
    /// batch's time, and batches grow by themselves as work piles up while one is written.
    public var linger: Duration = .milliseconds(100)
    /// When a failed message is retried and when it is parked; the queues must exist.
    public var retry = RetryPolicy.standard
    /// Declared by every consumer when it connects, so a bare broker works.
    public var topology = Topology.tally

    public init(name: String, queue: String) {
        self.name = name
        self.queue = queue
    }
}

/// One work queue consumed by `consumers` competing consumers, as a swift-service-lifecycle
/// `Service`: the loop every Tally worker shares.
///
/// Each consumer connects (retrying) with its own AMQP connection, declares the topology,
/// sets its prefetch and consumes; it collects a batch (up to `maxBatch` messages or
/// `batchBytes`: what has arrived, and while the queue holds more than the prefetch what
/// arrives within `linger` after the first), hands it to the handler, and does what `BatchAttempt` decides with the outcome — park the poison, hold the batch
/// while a dependency is down, retry conflicts, split a failed batch to find the message
/// at fault, send a failed message to its retry queue or park it — and only then acks the
/// batch (`multiple`). A crash at any point leaves unacked messages to be redelivered:
/// handlers must be idempotent. A lost broker connection reconnects. On graceful
/// shutdown each consumer finishes the batch in hand (or, while holding, leaves it
/// unacked), then closes its connections; prefetched messages go back to the queue.
public struct QueueWorker<Handler: QueueWorkHandler>: Service {
    let settings: QueueWorkerSettings
    let amqp: AMQPConfiguration
    let handler: Handler
    let publisher: ConfirmedPublisher
    let observer: any QueueWorkerObserver
    let logger: Logger

    /// A worker of `handler` on `settings.queue`; failed messages are routed through
    /// `publisher` (a connection with confirms, never a consuming one).
    public init(
        settings: QueueWorkerSettings, amqp: AMQPConfiguration, handler: Handler, publisher: ConfirmedPublisher,
        observer: any QueueWorkerObserver = SilentObserver(), logger: Logger
    ) {
        self.settings = settings
        self.amqp = amqp
        self.handler = handler
        self.publisher = publisher
        self.observer = observer
        self.logger = logger
    }

    public func run() async throws {
        let shutdown = ShutdownFlag()
        // Cancellation too (another service of the group failed): stop like on SIGTERM.
        await withTaskCancellationOrGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<settings.consumers {
                    group.addTask { await consumer(index, shutdown: shutdown) }
                }
            }
        } onCancelOrGracefulShutdown: {
            logger.info("shutting down: finishing the work in hand", metadata: ["amqp.queue": "\(settings.queue)"])
            shutdown.set()
        }
    }

    private var router: FailureRouter { FailureRouter(queue: settings.queue, retry: settings.retry, publisher: publisher) }

    private func consumer(_ index: Int, shutdown: ShutdownFlag) async {
        let logger = {
            var logger = self.logger
            logger[metadataKey: "consumer"] = "\(index)"
            return logger
        }()
        guard let session = await handler.openSession(consumer: index, logger: logger, shouldStop: { shutdown.isSet }) else { return }
        while !shutdown.isSet {
            let channel: AMQPConnection
            do {
                channel = try await cancelWhenGracefulShutdown { try await connect(index, logger: logger) }
            } catch {
                break  // shutdown while the broker was away
            }
            logger.info("consuming", metadata: ["amqp.queue": "\(settings.queue)"])
            do {
                try await consume(channel, consumer: index, session: session, shutdown: shutdown, logger: logger)
            } catch {
                logger.warning("consumer stopped; reconnecting", metadata: ["error": "\(error)"])
            }
            await channel.close()
        }
        await handler.closeSession(session)
        logger.info("consumer stopped")
    }

    private func connect(_ index: Int, logger: Logger) async throws -> AMQPConnection {
        let tag = "\(settings.name)-\(ProcessInfo.processInfo.processIdentifier)-\(index)"
        return try await AMQPConnection.connectRetrying(
            configuration: amqp, logger: logger,
            setUp: { [settings] connection in
                try await connection.openChannel(1)
                try await settings.topology.declare(on: connection)
                try await connection.setPrefetch(settings.prefetch)
                try await connection.consume(settings.queue, consumerTag: tag)
            })
    }

    private func consume(
        _ channel: AMQPConnection, consumer index: Int, session: Handler.Session, shutdown: ShutdownFlag, logger: Logger
    ) async throws {
        var depthCheckedAt = ContinuousClock.now - .seconds(60)
        var batchBytes = settings.batchBytes
        while !shutdown.isSet {
            if index == 0, ContinuousClock.now - depthCheckedAt > .seconds(5) {
                observer.queueDepth(Int(try await channel.declareQueue(settings.queue, passive: true)))
                depthCheckedAt = .now
            }
            let deliveries = try await collect(channel, batchBytes: batchBytes)
            guard let last = deliveries.last else { continue }
            var batchLogger = logger
            batchLogger[metadataKey: "batch.id"] = "\(index)-\(last.deliveryTag)"
            var asked: Int?
            switch try await settle(deliveries, session: session, shutdown: shutdown, nextBatchBytes: &asked, logger: batchLogger) {
            case .settled: try await channel.ack(last.deliveryTag, multiple: true)
            case .abandoned: return
            case .reconnect: throw BrokerGone()
            }
            if let asked { batchBytes = min(max(asked, settings.batchBytesRange.lowerBound), settings.batchBytesRange.upperBound) }
        }
    }

    /// Deliveries until the batch is full (`maxBatch` or `batchBytes`): those already
    /// received, then — when the queue holds more, ready but not yet sent here because
    /// the prefetch is taken — those arriving within the linger time; empty when nothing
    /// came for a while.
    private func collect(_ channel: AMQPConnection, batchBytes: Int) async throws -> [Delivery] {
        guard let first = try await channel.nextDelivery(timeout: .milliseconds(250)) else { return [] }
        var deliveries = [first]
        var bytes = first.body.count
        var full: Bool { deliveries.count >= batchLimit || bytes >= batchBytes }
        // What the connection has received already (a zero timeout does not wait).
        while !full, let next = try await channel.nextDelivery(timeout: .zero) {
            deliveries.append(next)
            bytes += next.body.count
        }
        // A backlog: the broker sends the rest as the prefetch frees up — wait for it.
        guard !full, settings.linger > .zero, try await channel.declareQueue(settings.queue, passive: true) > 0 else { return deliveries }
        let deadline = ContinuousClock.now + settings.linger
        while !full {
            let remaining = deadline - .now
            guard remaining > .zero, let next = try await channel.nextDelivery(timeout: remaining) else { break }
            deliveries.append(next)
            bytes += next.body.count
        }
        return deliveries
    }

    private var batchLimit: Int { max(1, min(settings.maxBatch, Int(settings.prefetch))) }

    private enum Settlement {
        /// Every delivery done, retried or parked: ack.
        case settled
        /// Shutdown during a hold: leave the batch unacked.
        case abandoned
        /// The broker connection is gone.
        case reconnect
    }

    /// Processes the batch until every delivery is done, waiting to be retried or parked;
    /// `nextBatchBytes` is what the handler last asked for.
    private func settle(
        _ deliveries: [Delivery], session: Handler.Session, shutdown: ShutdownFlag, nextBatchBytes: inout Int?, logger: Logger
    ) async throws -> Settlement {
        var remaining = deliveries
        var attempt = BatchAttempt(
            size: deliveries.count, attempt: FailureRouter.attempt(of: deliveries[0]), queue: settings.queue, retry: settings.retry)
        while true {
            let outcome = await handler.process(remaining, in: session, logger: logger)
            nextBatchBytes = outcome.nextBatchBytes ?? nextBatchBytes
            if !outcome.poisoned.isEmpty {
                try await park(outcome.poisoned, of: remaining, session: session, logger: logger)
                let parked = Set(outcome.poisoned.map(\.deliveryTag))
                remaining.removeAll { parked.contains($0.deliveryTag) }
            }
            guard let failure = outcome.failure, !remaining.isEmpty else { return .settled }
            observer.workFailed(failure)
            switch attempt.next(after: failure, shuttingDown: shutdown.isSet) {
            case .retryNow(let pause):
                logger.info("work conflicted; retrying", metadata: ["error": "\(failure)"])
                try? await Task.sleep(for: pause)
            case .hold(let pause):
                logger.warning("\(Self.dependency(failure)) unavailable; holding the batch", metadata: ["retry.in": "\(pause)"])
                try? await Task.sleep(for: pause)
            case .split:
                for delivery in remaining {
                    let single = try await settle(
                        [delivery], session: session, shutdown: shutdown, nextBatchBytes: &nextBatchBytes, logger: logger)
                    guard case .settled = single else { return single }
                }
                return .settled
            case .retryLater(let routingKey, let next):
                try await router.retryLater(remaining[0], routingKey: routingKey, attempt: next)
                observer.retried(1)
                logger.warning(
                    "message will be retried",
                    metadata: ["attempt": "\(next)", "amqp.routing_key": "\(routingKey)", "error": "\(failure)"])
                return .settled
            case .park(let reason):
                try await park([.init(deliveryTag: remaining[0].deliveryTag, reason: reason)], of: remaining, session: session, logger: logger)
                return .settled
            case .abandon:
                return .abandoned
            case .reconnect:
                return .reconnect
            }
        }
    }

    private func park(
        _ poisoned: [WorkOutcome.Poisoned], of deliveries: [Delivery], session: Handler.Session, logger: Logger
    ) async throws {
        let byTag = Dictionary(uniqueKeysWithValues: deliveries.map { ($0.deliveryTag, $0) })
        let parked = poisoned.compactMap { item in byTag[item.deliveryTag].map { ($0, item.reason) } }
        try await router.park(parked.map(\.0), reasons: parked.map(\.1))
        observer.parked(parked.count)
        for (delivery, reason) in parked {
            logger.warning("message parked", metadata: ["amqp.message_id": "\(delivery.properties.messageID ?? "-")", "reason": "\(reason)"])
            await handler.didPark(delivery, reason: reason, in: session, logger: logger)
        }
    }

    private static func dependency(_ failure: WorkFailure) -> String {
        if case .dependencyDown(let name) = failure { return name }
        return "a dependency"
    }
}

/// The handler reported the broker connection lost.
struct BrokerGone: Error, CustomStringConvertible {
    var description: String { "the broker connection is gone" }
}
