import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging
import TallyRuntime

/// How a consumer batches and retries.
struct ConsumerSettings: Sendable {
    var queue = QueueName.aggregatorUsage
    var prefetch: UInt16 = 40
    var batchBytes = 4 << 20
    var linger: Duration = .milliseconds(100)
    var retry = RetryPolicy.standard
}

/// One consumer: its own AMQP connection (manual acks, prefetch) and its own
/// PostgreSQL connection. Many run side by side, in one process and across
/// processes; exactness comes from the ledger's dedup, not from coordination.
///
/// The loop: collect deliveries until the batch is big enough or the linger time
/// is up; park what is not a usage batch (confirmed) and write the rest in one
/// transaction; only then ack the batch with `multiple`. A crash at any point
/// leaves the unacked messages to be redelivered, and the dedup makes that safe.
struct UsageConsumer: Sendable {
    let index: Int
    let amqp: AMQPConfiguration
    let database: PostgresConfiguration
    let settings: ConsumerSettings
    let publisher: ConfirmedPublisher
    let metrics: AggregatorMetrics
    let shutdown: ShutdownFlag
    let logger: Logger
    /// Runs after every commit (quota state, billing events); failures are logged there.
    let afterCommit: @Sendable (LedgerOutcome, PostgresConnection) async -> Void

    func run() async {
        var logger = logger
        logger[metadataKey: "consumer"] = "\(index)"
        guard let connection = await PostgresConnection.connectRetrying(
            configuration: database, logger: logger, shouldStop: { shutdown.isSet })
        else { return }
        await consumeUntilShutdown(database: connection, logger: logger)
        await connection.close()
        logger.info("consumer stopped")
    }

    private func consumeUntilShutdown(database connection: PostgresConnection, logger: Logger) async {
        while !shutdown.isSet {
            let channel: AMQPConnection
            do {
                channel = try await cancelWhenGracefulShutdown {
                    try await AMQPConnection.connectRetrying(configuration: amqp, logger: logger, setUp: { connection in
                        try await connection.openChannel(1)
                        try await Topology.tally.declare(on: connection)
                        try await connection.setPrefetch(settings.prefetch)
                        try await connection.consume(settings.queue, consumerTag: "aggregator-\(ProcessInfo.processInfo.processIdentifier)-\(index)")
                    })
                }
            } catch {
                return  // shutdown while the broker was away
            }
            logger.info("consuming", metadata: ["amqp.queue": "\(settings.queue)"])
            do {
                try await consume(channel, database: connection, logger: logger)
            } catch {
                logger.warning("consumer stopped; reconnecting", metadata: ["error": "\(error)"])
            }
            await channel.close()
        }
    }

    private func consume(_ channel: AMQPConnection, database: PostgresConnection, logger: Logger) async throws {
        var depthCheckedAt = ContinuousClock.now - .seconds(60)
        while !shutdown.isSet {
            if index == 0, ContinuousClock.now - depthCheckedAt > .seconds(5) {
                metrics.queueDepth(Int(try await channel.declareQueue(settings.queue, passive: true)))
                depthCheckedAt = .now
            }
            let deliveries = try await collect(channel)
            guard let last = deliveries.last else { continue }
            var batchLogger = logger
            batchLogger[metadataKey: "batch.id"] = "\(index)-\(last.deliveryTag)"
            guard try await settle(deliveries, database: database, logger: batchLogger) else { return }
            try await channel.ack(last.deliveryTag, multiple: true)
        }
    }

    /// Deliveries until the batch holds `prefetch` messages or `batchBytes`, or the
    /// linger time after the first one is up; empty when nothing came for a while.
    private func collect(_ channel: AMQPConnection) async throws -> [Delivery] {
        guard let first = try await channel.nextDelivery(timeout: .milliseconds(250)) else { return [] }
        var deliveries = [first]
        var bytes = first.body.count
        let deadline = ContinuousClock.now + settings.linger
        while deliveries.count < Int(settings.prefetch), bytes < settings.batchBytes {
            let remaining = deadline - .now
            guard remaining > .zero, let next = try await channel.nextDelivery(timeout: remaining) else { break }
            deliveries.append(next)
            bytes += next.body.count
        }
        return deliveries
    }

    /// Parks, commits or retries every delivery; false when shutdown came while the
    /// database was away (nothing is acked then: the broker redelivers).
    private func settle(_ deliveries: [Delivery], database: PostgresConnection, logger: Logger) async throws -> Bool {
        let batch = UsageDecoder(now: Date()).decode(deliveries.map(UsageMessage.init))
        metrics.received(batch.eventCount + batch.parkedEvents.count)
        try await park(batch.unreadable, of: deliveries, logger: logger)
        switch await commit(batch, database: database, logger: logger) {
        case .committed: return true
        case .shuttingDown: return false
        case .failed(let error) where deliveries.count == 1:
            try await retryOrPark(deliveries[0], error: error, logger: logger)
            return true
        case .failed:
            // Find the message at fault: each on its own; the one that fails again is retried later.
            let unreadable = Set(batch.unreadable.map(\.deliveryTag))
            for delivery in deliveries where !unreadable.contains(delivery.deliveryTag) {
                let single = UsageDecoder(now: Date()).decode([UsageMessage(delivery)])
                switch await commit(single, database: database, logger: logger) {
                case .committed: continue
                case .shuttingDown: return false
                case .failed(let error): try await retryOrPark(delivery, error: error, logger: logger)
                }
            }
            return true
        }
    }

    private enum CommitResult {
        case committed
        case shuttingDown
        case failed(any Error)
    }

    /// Commits `batch`, waiting out database outages (the messages stay unacked and
    /// keep no retry budget busy) and retrying deadlocks and serialization failures.
    private func commit(_ batch: DecodedBatch, database: PostgresConnection, logger: Logger) async -> CommitResult {
        var conflicts = 0
        var delay = Duration.milliseconds(100)
        while true {
            let started = ContinuousClock.now
            do {
                let outcome = try await UsageLedger.record(batch, now: Date(), on: database)
                let elapsed = ContinuousClock.now - started
                metrics.committed(
                    outcome, seconds: elapsed.seconds,
                    visibleAfter: batch.earliestEventTime.map { Date().timeIntervalSince($0) })
                let tenants = outcome.insertedByTenant.keys.map { $0.uuidString.lowercased() }.sorted()
                logger.debug(
                    "batch committed",
                    metadata: [
                        "events.inserted": "\(outcome.inserted)", "events.duplicate": "\(outcome.duplicates)",
                        "events.parked": "\(outcome.parked)", "commit.ms": "\(Int(elapsed.seconds * 1000))",
                        "tenant.ids": .array(tenants.prefix(20).map { .string($0) }),
                    ])
                // The first few by name; `aggregator dlq list` has them all.
                for event in batch.parkedEvents.prefix(10) {
                    logger.info(
                        "event parked",
                        metadata: [
                            "tenant.id": "\(event.tenantID ?? "-")", "usage.event_id": "\(event.eventID ?? "-")",
                            "reason": "\(event.reason)", "amqp.message_id": "\(event.messageID ?? "-")",
                        ])
                }
                if outcome.parked > batch.parkedEvents.count {
                    logger.info("events of unknown tenants parked", metadata: ["events.parked": "\(outcome.parked - batch.parkedEvents.count)"])
                }
                await afterCommit(outcome, database)
                return .committed
            } catch let error as PostgresError where error.isConnectionError || error.code == .connectionFailed {
                metrics.databaseFailed()
                guard !shutdown.isSet else { return .shuttingDown }
                logger.warning("database unavailable; holding the batch", metadata: ["error": "\(error)", "retry.in": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            } catch let error as PostgresError where error.isRetryableConflict && conflicts < 3 {
                conflicts += 1
                metrics.databaseFailed()
                logger.info("batch conflicted; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(20 * conflicts))
            } catch {
                metrics.databaseFailed()
                logger.error("batch failed", metadata: ["error": "\(String(reflecting: error))"])
                return .failed(error)
            }
        }
    }

    private var router: FailureRouter { FailureRouter(queue: settings.queue, retry: settings.retry, publisher: publisher) }

    private func park(_ unreadable: [UnreadableMessage], of deliveries: [Delivery], logger: Logger) async throws {
        guard !unreadable.isEmpty else { return }
        let byTag = Dictionary(uniqueKeysWithValues: deliveries.map { ($0.deliveryTag, $0) })
        let parked = unreadable.compactMap { item in byTag[item.deliveryTag].map { ($0, item.reason) } }
        try await router.park(parked.map(\.0), reasons: parked.map(\.1))
        metrics.parkedMessages(parked.count)
        for item in unreadable {
            logger.warning(
                "message parked", metadata: ["amqp.message_id": "\(byTag[item.deliveryTag]?.properties.messageID ?? "-")", "reason": "\(item.reason)"])
        }
    }

    /// After a failed attempt: to the retry queue for the next attempt, or parked with
    /// the error (the server's message included) once the attempts are used up.
    private func retryOrPark(_ delivery: Delivery, error: any Error, logger: Logger) async throws {
        switch try await router.retryOrPark(delivery, reason: String(reflecting: error)) {
        case .retry(let routingKey, let next):
            metrics.retriedMessages(1)
            logger.warning("message will be retried", metadata: ["attempt": "\(next)", "amqp.routing_key": "\(routingKey)"])
        case .park:
            metrics.parkedMessages(1)
            logger.error("message parked after its last attempt", metadata: ["error": "\(error)"])
        }
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for metrics).
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
