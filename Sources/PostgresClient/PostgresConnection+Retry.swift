import Logging

extension PostgresConnection {
    /// Connects, retrying with capped exponential backoff while the server is away,
    /// until it succeeds or `shouldStop` says to give up (then nil): a worker's start-up.
    public static func connectRetrying(
        configuration: PostgresConfiguration, logger: Logger, maxDelay: Duration = .seconds(5),
        shouldStop: @Sendable () -> Bool
    ) async -> PostgresConnection? {
        var delay = Duration.milliseconds(200)
        while !shouldStop() {
            do {
                return try await connect(configuration: configuration, logger: logger)
            } catch {
                logger.warning("database unavailable; retrying", metadata: ["error": "\(error)", "retry.in": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, maxDelay)
            }
        }
        return nil
    }
}
