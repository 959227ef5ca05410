import Logging
import RabbitMQClient

/// A worker's own publishing connection (confirms on channel 1), opened lazily and
/// re-opened after the broker went away. Workers publish retries, parked messages
/// and billing events through it; a consuming connection never publishes (a confirm
/// arriving there would be mistaken for a delivery).
///
/// Before each publish the connection is checked without blocking
/// (`AMQPConnection.isAlive`): one the broker closed while it sat idle (a restart, a
/// missed heartbeat, an operator's `close_connection`) is replaced first, so the
/// publish is confirmed on the new one instead of failing or waiting `confirmTimeout`.
public actor ConfirmedPublisher {
    private let configuration: AMQPConfiguration
    private let logger: Logger
    private let confirmTimeout: Duration
    private var connection: AMQPConnection?
    /// Connections opened so far (1 after the first publish; each replacement adds one).
    public private(set) var connectionsOpened = 0

    public init(configuration: AMQPConfiguration, logger: Logger, confirmTimeout: Duration = .seconds(30)) {
        self.configuration = configuration
        self.logger = logger
        self.confirmTimeout = confirmTimeout
    }

    /// Publishes `messages` and waits for the broker's confirms; throws unless every
    /// one was confirmed (a nack or a return is an error: nothing may be acked then).
    public func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        let connection = try await live()
        do {
            let outcomes = try await connection.publish(messages, timeout: confirmTimeout)
            if let failed = outcomes.first(where: { $0 != .confirmed }) {
                throw PublishRefused(outcome: failed)
            }
        } catch let error as AMQPError {
            // Whatever failed (socket, channel, confirm timeout), start clean next time.
            await connection.close()
            self.connection = nil
            throw error
        }
    }

    /// Closes the connection (on shutdown).
    public func close() async {
        await connection?.close()
        connection = nil
    }

    private func live() async throws -> AMQPConnection {
        if let connection {
            if await connection.isAlive() { return connection }
            await connection.close()
            self.connection = nil
        }
        let fresh = try await AMQPConnection.connect(configuration: configuration, logger: logger)
        try await fresh.openChannel(1, confirms: true)
        connection = fresh
        connectionsOpened += 1
        return fresh
    }
}

/// The broker nacked or returned a message that had to be confirmed.
public struct PublishRefused: Error, CustomStringConvertible {
    public let outcome: PublishOutcome
    public var description: String { "the broker did not take the message: \(outcome)" }
}
