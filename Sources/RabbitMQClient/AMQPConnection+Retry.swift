import Logging

extension AMQPConnection {
    /// Connects and runs `setUp` (open channels, declare topology, start consuming),
    /// retrying both with capped exponential backoff until they succeed or the task
    /// is cancelled. This is the usual reconnect policy of a worker: call it again
    /// whenever an operation throws an error whose `needsReconnect` is true.
    ///
    /// `onFailure` sees every failed attempt (for logs and metrics) with its number.
    public static func connectRetrying(
        configuration: AMQPConfiguration,
        logger: Logger,
        initialDelay: Duration = .milliseconds(200),
        maxDelay: Duration = .seconds(10),
        onFailure: @Sendable (AMQPError, Int) -> Void = { _, _ in },
        setUp: @Sendable (AMQPConnection) async throws -> Void = { _ in }
    ) async throws -> AMQPConnection {
        var delay = initialDelay
        var attempt = 0
        while true {
            try Task.checkCancellation()
            attempt += 1
            do {
                let connection = try await connect(configuration: configuration, logger: logger)
                try await setUp(connection)
                return connection
            } catch let error as AMQPError where error.needsReconnect || error.code == .channelClosed {
                onFailure(error, attempt)
                logger.warning(
                    "amqp connect failed; retrying",
                    metadata: ["amqp.target": "\(configuration)", "error": "\(error)", "retry.in": "\(delay)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, maxDelay)
            }
        }
    }
}
