import Logging
import PostgresClient
import ServiceLifecycle

/// The outbox's sweeper, one per worker process that writes to the outbox (the
/// Aggregator, the Invoicer): every `interval` it publishes what is unsent, whoever wrote
/// it — a message a crash left between commit and publish, or one written by a process
/// that does not relay (the billing API's billing-run commands). Workers also drain
/// right after their own commits; this is what makes "sent" certain, not prompt.
/// Runs on a connection of its own until graceful shutdown.
public struct OutboxRelayService: Service {
    /// The sweep interval of every worker.
    public static let interval: Duration = .milliseconds(500)

    let relay: OutboxRelay
    let database: PostgresConfiguration
    let logger: Logger

    public init(relay: OutboxRelay, database: PostgresConfiguration, logger: Logger) {
        self.relay = relay
        self.database = database
        self.logger = logger
    }

    public func run() async throws {
        let pool = PostgresPool(configuration: database, size: 1, logger: logger)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                _ = try await pool.withConnection { try await relay.drain($0) }
            } catch {
                logger.warning("outbox sweep failed; retrying", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
        }
        await pool.close()
    }
}
