import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging
import TallyRuntime

/// The Aggregator's work: its consumers, and the hourly upkeep of the usage
/// partitions. On graceful shutdown every consumer finishes, commits and acks the
/// batch it holds, then closes its connections (prefetched messages go back to the
/// queue for the other consumers).
struct AggregatorService: Service {
    let configuration: AggregatorConfiguration
    let metrics: AggregatorMetrics
    let logger: Logger

    func run() async throws {
        let amqp = try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-aggregator")
        let database = try PostgresConfiguration(url: configuration.databaseURL)
        let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
        let shutdown = ShutdownFlag()
        let maintenance = PostgresPool(configuration: database, size: 1, logger: logger)
        let relay = BillingEventRelay(publisher: publisher, logger: logger)
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<configuration.consumers {
                    let consumer = UsageConsumer(
                        index: index, amqp: amqp, database: database, settings: configuration.settings,
                        publisher: publisher, metrics: metrics, shutdown: shutdown, logger: logger,
                        afterCommit: relay.afterCommit)
                    group.addTask { await consumer.run() }
                }
                group.addTask {
                    await Upkeep(pool: maintenance, relay: relay, logger: logger).run(until: shutdown)
                }
            }
        } onGracefulShutdown: {
            logger.info("shutting down: finishing the batches in hand")
            shutdown.set()
        }
        await publisher.close()
        await maintenance.close()
        logger.info("aggregator stopped")
    }
}

/// Background upkeep: the monthly partitions of `usage_events` kept ready for every
/// time a worker can accept (90 days back, 5 minutes ahead) with a margin — 4 months
/// back, 2 ahead — checked hourly; and the billing-event outbox swept every few
/// seconds for events a crash left unsent.
struct Upkeep: Sendable {
    let pool: PostgresPool
    let relay: BillingEventRelay
    let logger: Logger

    func run(until shutdown: ShutdownFlag) async {
        var partitionsDue = ContinuousClock.now
        var outboxDue = ContinuousClock.now
        while !shutdown.isSet {
            if ContinuousClock.now >= partitionsDue {
                do {
                    let created = try await ensure()
                    if created > 0 { logger.info("usage partitions created", metadata: ["partitions": "\(created)"]) }
                    partitionsDue = .now + .seconds(3600)
                } catch {
                    logger.warning("partition upkeep failed; retrying in a minute", metadata: ["error": "\(error)"])
                    partitionsDue = .now + .seconds(60)
                }
            }
            if ContinuousClock.now >= outboxDue {
                do {
                    _ = try await pool.withConnection { try await relay.outbox.drain($0) }
                } catch {
                    logger.warning("outbox sweep failed; retrying", metadata: ["error": "\(error)"])
                }
                outboxDue = .now + .seconds(5)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Creates the missing partitions; returns how many.
    func ensure() async throws -> Int {
        try await pool.query(
            """
            SELECT tally_ensure_usage_partitions((now() - interval '4 months')::date, (now() + interval '2 months')::date)
            """)[0].decode(0, as: Int.self)
    }
}
