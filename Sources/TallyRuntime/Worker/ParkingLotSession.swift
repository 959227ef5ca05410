import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging

extension ParkingLot {
    /// What a worker's `dlq` command works with: the parking lot of `queue`, a channel to
    /// look at it, a confirmed publisher to replay from it, and the database (for what the
    /// parked messages refer to), from the process's configuration (`AMQP_URL`, `DATABASE_URL`).
    public struct Session: Sendable {
        public let lot: ParkingLot
        public let channel: AMQPConnection
        public let publisher: ConfirmedPublisher
        public let database: PostgresPool
        public let logger: Logger

        /// Opens the connections for `process` (named in logs and the broker's connection
        /// list as `tally-PROCESS-dlq`), runs `body`, and closes them however it ends.
        public static func with(
            process: String, queue: String, retry: RetryPolicy, reader: ConfigurationReader = ConfigurationReader(),
            _ body: (Session) async throws -> Void
        ) async throws {
            var logger = Logger(label: "\(process).dlq")
            logger.logLevel = .error
            let amqp = try AMQPConfiguration(url: try reader.string(.amqpURL), connectionName: "tally-\(process)-dlq")
            let channel = try await AMQPConnection.connect(configuration: amqp, logger: logger)
            let session = Session(
                // The policy only names the parking lot (the queue's name + `.parked`).
                lot: ParkingLot(queue: queue, retry: retry, amqp: amqp), channel: channel,
                publisher: ConfirmedPublisher(configuration: amqp, logger: logger),
                database: PostgresPool(configuration: try PostgresConfiguration(url: try reader.string(.databaseURL)), size: 1, logger: logger),
                logger: logger)
            do {
                try await channel.openChannel(1)
                do {
                    _ = try await channel.declareQueue(session.lot.name, passive: true)
                } catch {
                    // A mistyped --queue: say which name was looked for, not a raw 404.
                    guard (error as AMQPError).replyCode == 404 else { throw error }
                    throw CommandFailure(
                        "the broker has no queue \(session.lot.name): is \(queue) the worker's work queue (--queue)? "
                            + "`rabbitmqctl list_queues name` shows the queues")
                }
                try await body(session)
            } catch {
                await session.close()
                throw error
            }
            await session.close()
        }

        func close() async {
            await channel.close()
            await publisher.close()
            await database.close()
        }
    }
}
