import CivilTime
import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging
import TallyRuntime
import TallyStore

/// Background upkeep: the monthly partitions of `usage_events` kept ready for every
/// time a worker can accept (90 days back, 5 minutes ahead) with a margin — 4 months
/// back, 2 ahead — checked hourly, with the event ids past their dedup retention
/// forgotten and the log of configuration changes kept to a day (`ConfigVersions.pruneLog`:
/// every consumer reads it each batch; one that last read before the pruning starts its
/// cache again). (The outbox has its own sweeper, `OutboxRelayService`.)
struct Upkeep: Service {
    let pool: PostgresPool
    let logger: Logger

    func run() async throws {
        var partitionsDue = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if ContinuousClock.now >= partitionsDue {
                do {
                    let created = try await ensure()
                    if created > 0 { logger.info("usage partitions created", metadata: ["partitions": "\(created)"]) }
                    let forgotten = try await forgetExpiredIDs()
                    if forgotten > 0 { logger.info("expired event ids forgotten", metadata: ["ids": "\(forgotten)"]) }
                    let pruned = try await pool.withTransaction { connection in
                        try ConfigVersions.hasLog(on: connection)
                            ? try ConfigVersions.pruneLog(olderThan: Self.changeLogRetention, on: connection) : 0
                    }
                    if pruned > 0 { logger.info("configuration change log pruned", metadata: ["rows": "\(pruned)"]) }
                    partitionsDue = .now + .seconds(3600)
                } catch {
                    logger.warning("partition upkeep failed; retrying in a minute", metadata: ["error": "\(error)"])
                    partitionsDue = .now + .seconds(60)
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(250)) }
        }
        await pool.close()
    }

    /// How long a configuration change stays in the log.
    static let changeLogRetention = Duration.seconds(24 * 3600)

    /// Deletes the ids past their retention (`UsagePartitions.idRetention`), 10,000 per
    /// statement so no transaction grows large; returns how many.
    func forgetExpiredIDs() async throws -> Int {
        var total = 0
        while !Task.isShuttingDownGracefully {
            let deleted = try await UsagePartitions.forgetExpiredIDs(limit: 10_000, on: pool)
            total += deleted
            if deleted < 10_000 { break }
        }
        return total
    }

    /// Creates the missing partitions around Tally's clock (the times events may carry
    /// follow it); returns how many.
    func ensure() async throws -> Int {
        try await UsagePartitions.ensure(around: TallyClock.now(), on: pool)
    }
}
