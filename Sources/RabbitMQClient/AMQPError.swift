/// A failure talking to RabbitMQ.
///
/// When the broker closed the channel or connection, `replyCode` and `replyText`
/// carry its reason (e.g. 404 NOT_FOUND, 406 PRECONDITION_FAILED, 320 CONNECTION_FORCED).
public struct AMQPError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, for callers deciding whether to reconnect.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable {
            case configuration, connectionFailed, connectionClosed, connectionLost, channelClosed, timeout, unexpected
        }
        let base: Base
        init(_ base: Base) { self.base = base }

        /// The URL or options are unusable.
        public static let configuration = Code(.configuration)
        /// Could not open or log in (broker down, wrong credentials, TLS failure).
        public static let connectionFailed = Code(.connectionFailed)
        /// The broker closed the connection (`replyCode` says why); open a new one.
        public static let connectionClosed = Code(.connectionClosed)
        /// The socket failed or heartbeats stopped; open a new connection.
        public static let connectionLost = Code(.connectionLost)
        /// The broker closed the channel (`replyCode` says why); the connection lives on.
        public static let channelClosed = Code(.channelClosed)
        /// Confirms did not arrive in time; the outcome of the unconfirmed messages is unknown.
        public static let timeout = Code(.timeout)
        /// A frame or state this client did not expect.
        public static let unexpected = Code(.unexpected)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let replyCode: UInt16?
    public let message: String

    init(_ code: Code, message: String, replyCode: UInt16? = nil) {
        self.code = code
        self.message = message
        self.replyCode = replyCode
    }

    /// The connection is unusable: reconnect before doing anything else.
    public var needsReconnect: Bool {
        [.connectionFailed, .connectionClosed, .connectionLost, .unexpected].contains(code)
    }

    public var description: String {
        if let replyCode { return "AMQPError(\(code), \(replyCode) \(message))" }
        return "AMQPError(\(code), \(message))"
    }
}
