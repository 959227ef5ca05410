import Logging
import RabbitMQClient

/// Asks the broker how many messages a queue holds ready, over a connection of its own that
/// never consumes; one for all the consumers of a `QueueWorker`.
///
/// On a consuming connection the answer to a passive `queue.declare` waits behind every
/// delivery the broker sent first, and rabbitmq-c keeps each of those in the connection's
/// frame memory until the answer is read: a consumer lingering for a backlog held up to a
/// whole prefetch of message bodies twice (at 400 messages of 130 KB, 52 MB a consumer).
/// Here the deliveries stay in the socket until the consumer reads them one by one.
///
/// The connection is opened on first use and again after it failed (at most once a
/// second); while the broker cannot be asked, the depth is unknown (nil) and the caller
/// decides without it.
actor QueueDepthProbe {
    private let amqp: AMQPConfiguration
    private let logger: Logger
    private var connection: AMQPConnection?
    private var lastAttempt: ContinuousClock.Instant?

    init(amqp: AMQPConfiguration, logger: Logger) {
        self.amqp = amqp
        self.logger = logger
    }

    /// The messages ready in `queue` (not those sent to consumers and unacked), or nil when
    /// the broker could not be asked.
    func readyMessages(in queue: String) async -> Int? {
        guard let connection = await usableConnection() else { return nil }
        do {
            return Int(try await connection.declareQueue(queue, passive: true))
        } catch {
            logger.debug("queue depth unknown", metadata: ["amqp.queue": "\(queue)", "error": "\(error)"])
            // Forgotten before the close (a suspension), so a connection another caller opens
            // meanwhile is not forgotten instead.
            if self.connection === connection { self.connection = nil }
            await connection.close()
            return nil
        }
    }

    /// Closes the connection (the worker is stopping).
    func close() async {
        await connection?.close()
        connection = nil
    }

    private func usableConnection() async -> AMQPConnection? {
        if let held = connection {
            if await held.isAlive() { return held }
            if connection === held { connection = nil }
            await held.close()
        }
        if let lastAttempt, ContinuousClock.now - lastAttempt < .seconds(1) { return nil }
        lastAttempt = .now
        do {
            let opened = try await AMQPConnection.connect(configuration: amqp, logger: logger)
            try await opened.openChannel(1)
            // Another caller may have connected while this one waited (actor reentrancy).
            if let connection {
                await opened.close()
                return connection
            }
            connection = opened
            return opened
        } catch {
            logger.debug("queue depth probe cannot connect", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
