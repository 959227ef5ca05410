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

    /// Whether a batch of deliveries never delivered before goes to
    /// `process(_:in:logger:)` with a `DeliveryFeed`, as its deliveries arrive (false:
    /// every batch is collected whole first).
    var streamsBatches: Bool { get }

    /// Does the work of a batch as its deliveries arrive (`feed.next()`), as
    /// `process(_:in:logger:)` does with a whole one, and may drop each body once read
    /// (`DeliveryFeed.releaseBody(at:)`) to free its memory while it works — never one it
    /// reports `poisoned`, parked with its body. The feed hands out only deliveries never
    /// delivered before. A batch that fails after a body was dropped cannot be retried,
    /// held or split here: the worker requeues it (nack), and it comes again marked
    /// redelivered, to be collected and handled whole, bodies kept. The default reads the
    /// whole batch and hands it to `process(_:in:logger:)`.
    func process(_ feed: DeliveryFeed, in session: Session, logger: Logger) async -> WorkOutcome

    /// Called after the worker parked `delivery` (to record the failure where people look).
    func didPark(_ delivery: Delivery, reason: String, in session: Session, logger: Logger) async
}

extension QueueWorkHandler {
    public func didPark(_ delivery: Delivery, reason: String, in session: Session, logger: Logger) async {}

    public var streamsBatches: Bool { false }

    public func process(_ feed: DeliveryFeed, in session: Session, logger: Logger) async -> WorkOutcome {
        while await feed.next() != nil {}
        return await process(feed.deliveries, in: session, logger: logger)
    }
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
    /// Messages put back in the work queue (a failed batch whose bodies were dropped).
    func requeued(_ count: Int)
    /// Messages ready in the work queue (checked every few seconds by consumer 0).
    func queueDepth(_ depth: Int)
}

extension QueueWorkerObserver {
    public func workFailed(_ failure: WorkFailure) {}
    public func retried(_ count: Int) {}
    public func parked(_ count: Int) {}
    public func requeued(_ count: Int) {}
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
/// batch (`multiple`). A handler that `streamsBatches` is handed a batch of first deliveries
/// as they arrive (`DeliveryFeed`) and may drop each body once read; if the batch's work
/// then fails, the worker puts it back in the queue (nack with requeue) instead, and it
/// comes again marked redelivered, to be collected whole, bodies kept. A crash at any
/// point leaves unacked messages to be redelivered: handlers must be idempotent. A lost broker connection reconnects. On graceful
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
        let probe = QueueDepthProbe(amqp: amqp, logger: logger)
        // Cancellation too (another service of the group failed): stop like on SIGTERM.
        await withTaskCancellationOrGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<settings.consumers {
                    group.addTask { await consumer(index, probe: probe, shutdown: shutdown) }
                }
            }
            await probe.close()
        } onCancelOrGracefulShutdown: {
            logger.info("shutting down: finishing the work in hand", metadata: ["amqp.queue": "\(settings.queue)"])
            shutdown.set()
        }
    }

    private var router: FailureRouter { FailureRouter(queue: settings.queue, retry: settings.retry, publisher: publisher) }

    private func consumer(_ index: Int, probe: QueueDepthProbe, shutdown: ShutdownFlag) async {
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
                try await consume(channel, consumer: index, probe: probe, session: session, shutdown: shutdown, logger: logger)
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
        _ channel: AMQPConnection, consumer index: Int, probe: QueueDepthProbe, session: Handler.Session, shutdown: ShutdownFlag,
        logger: Logger
    ) async throws {
        var depthCheckedAt = ContinuousClock.now - .seconds(60)
        var batchBytes = settings.batchBytes
        // A redelivered delivery that ended a fed batch: the next batch's first.
        var carried: Delivery?
        while !shutdown.isSet {
            if index == 0, ContinuousClock.now - depthCheckedAt > .seconds(5) {
                if let depth = await probe.readyMessages(in: settings.queue) { observer.queueDepth(depth) }
                depthCheckedAt = .now
            }
            let waiting = carried
            carried = nil
            let received: Delivery?
            if let waiting { received = waiting } else { received = try await channel.nextDelivery(timeout: .milliseconds(250)) }
            guard let first = received else { continue }
            var batchLogger = logger
            var asked: Int?
            let settlement: Settlement
            let batchTags: [UInt64]
            if handler.streamsBatches, !first.redelivered {
                let feed = DeliveryFeed(
                    first: first, channel: channel, probe: probe, queue: settings.queue, limit: batchLimit, batchBytes: batchBytes,
                    linger: settings.linger, firstDeliveriesOnly: true)
                batchLogger[metadataKey: "batch.id"] = "\(index)-\(first.deliveryTag)"
                let outcome = await handler.process(feed, in: session, logger: batchLogger)
                carried = feed.leftover
                // The broker went away while the batch was read: what committed is found
                // stored when the unacked messages come again.
                if let error = feed.brokerError { throw error }
                batchTags = feed.deliveries.map(\.deliveryTag)
                settlement = try await settleFed(feed, outcome, session: session, shutdown: shutdown, nextBatchBytes: &asked, logger: batchLogger)
            } else {
                let deliveries = try await collect(first, channel, probe: probe, batchBytes: batchBytes)
                batchTags = deliveries.map(\.deliveryTag)
                batchLogger[metadataKey: "batch.id"] = "\(index)-\(batchTags[batchTags.count - 1])"
                settlement = try await settle(deliveries, session: session, shutdown: shutdown, nextBatchBytes: &asked, logger: batchLogger)
            }
            switch settlement {
            case .settled: try await channel.ack(batchTags[batchTags.count - 1], multiple: true)
            case .requeue(let tags):
                // The parked ones acked one by one, then the rest back to the queue.
                let requeued = Set(tags)
                for tag in batchTags where !requeued.contains(tag) {
                    try await channel.ack(tag)
                }
                if let highest = tags.max() { try await channel.nack(highest, multiple: true, requeue: true) }
            case .abandoned: return
            case .reconnect: throw BrokerGone()
            }
            if let asked { batchBytes = min(max(asked, settings.batchBytesRange.lowerBound), settings.batchBytesRange.upperBound) }
        }
    }

    /// What becomes of a fed batch after its handler's outcome: the poison parked; on a
    /// failure, the batch requeued when a body was dropped, else settled as a whole batch
    /// is (held, retried, split).
    private func settleFed(
        _ feed: DeliveryFeed, _ outcome: WorkOutcome, session: Handler.Session, shutdown: ShutdownFlag, nextBatchBytes: inout Int?,
        logger: Logger
    ) async throws -> Settlement {
        nextBatchBytes = outcome.nextBatchBytes
        var remaining = feed.deliveries
        if !outcome.poisoned.isEmpty {
            try await park(outcome.poisoned, of: remaining, session: session, logger: logger)
            let parked = Set(outcome.poisoned.map(\.deliveryTag))
            remaining.removeAll { parked.contains($0.deliveryTag) }
        }
        guard let failure = outcome.failure, !remaining.isEmpty else { return .settled }
        guard feed.releasedBodies else {
            // Every body still here: as a whole batch's failure (counted when tried again).
            return try await settle(remaining, session: session, shutdown: shutdown, nextBatchBytes: &nextBatchBytes, logger: logger)
        }
        observer.workFailed(failure)
        // Nothing here to try again with: back to the queue, to come again marked
        // redelivered and be handled with bodies kept (held, retried, split).
        logger.warning("batch failed; requeued to be handled again", metadata: ["error": "\(failure)", "messages": "\(remaining.count)"])
        observer.requeued(remaining.count)
        return .requeue(remaining.map(\.deliveryTag))
    }

    /// `first` and the deliveries after it until the batch is full (`maxBatch` or
    /// `batchBytes`): those already received, then — when the queue holds more, ready but
    /// not yet sent here because the prefetch is taken — those arriving within the linger
    /// time (`DeliveryFeed` hands a batch out by the same rules). The queue is asked on the probe's connection, not the consuming
    /// one (`QueueDepthProbe`); when it cannot be asked, the batch is what has arrived.
    private func collect(_ first: Delivery, _ channel: AMQPConnection, probe: QueueDepthProbe, batchBytes: Int) async throws -> [Delivery] {
        let feed = DeliveryFeed(
            first: first, channel: channel, probe: probe, queue: settings.queue, limit: batchLimit, batchBytes: batchBytes,
            linger: settings.linger, firstDeliveriesOnly: false)
        while await feed.next() != nil {}
        if let error = feed.brokerError { throw error }
        return feed.deliveries
    }

    private var batchLimit: Int { max(1, min(settings.maxBatch, Int(settings.prefetch))) }

    private enum Settlement {
        /// Every delivery done, retried or parked: ack.
        case settled
        /// The work of these deliveries failed after their bodies were released: requeue
        /// them (nack), ack the others (parked).
        case requeue([UInt64])
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
            size: remaining.count, attempt: FailureRouter.attempt(of: remaining[0]), queue: settings.queue, retry: settings.retry)
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
