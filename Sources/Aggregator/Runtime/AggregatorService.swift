import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging

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
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<configuration.consumers {
                    let consumer = UsageConsumer(
                        index: index, amqp: amqp, database: database, settings: configuration.settings,
                        publisher: publisher, metrics: metrics, shutdown: shutdown, logger: logger,
                        afterCommit: { _, _ in })
                    group.addTask { await consumer.run() }
                }
                group.addTask { await PartitionUpkeep(pool: maintenance, logger: logger).run(until: shutdown) }
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

/// Keeps the monthly partitions of `usage_events` ready for every time a worker can
/// accept (90 days back, 5 minutes ahead) with a margin: 4 months back, 2 ahead.
struct PartitionUpkeep: Sendable {
    let pool: PostgresPool
    let logger: Logger

    func run(until shutdown: ShutdownFlag) async {
        var nextRun = ContinuousClock.now
        while !shutdown.isSet {
            if ContinuousClock.now >= nextRun {
                do {
                    let created = try await ensure()
                    if created > 0 { logger.info("usage partitions created", metadata: ["partitions": "\(created)"]) }
                    nextRun = .now + .seconds(3600)
                } catch {
                    logger.warning("partition upkeep failed; retrying in a minute", metadata: ["error": "\(error)"])
                    nextRun = .now + .seconds(60)
                }
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
