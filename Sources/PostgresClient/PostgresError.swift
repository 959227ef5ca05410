import Foundation

/// A failure talking to PostgreSQL.
///
/// `description` says what kind of failure it was and the SQLSTATE, and never the
/// SQL or its parameters; `String(reflecting:)` adds the server's message, detail
/// (not an integrity violation's, which quotes row data) and constraint, for logs.
public struct PostgresError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong, for callers deciding whether to retry.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable {
            case configuration, connectionFailed, connectionLost, server, decoding, copy, protocolViolation, parameter
        }
        let base: Base
        init(_ base: Base) { self.base = base }

        /// The URL or options are unusable.
        public static let configuration = Code(.configuration)
        /// Could not connect (server down, wrong password, …).
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection broke during the call; the next call reconnects.
        public static let connectionLost = Code(.connectionLost)
        /// The server refused the statement; see `sqlState`.
        public static let server = Code(.server)
        /// A value could not be decoded into the requested type.
        public static let decoding = Code(.decoding)
        /// A COPY stream failed.
        public static let copy = Code(.copy)
        /// The server answered something this client did not expect.
        public static let protocolViolation = Code(.protocolViolation)
        /// A parameter cannot be sent (a NUL character in text); nothing was sent.
        public static let parameter = Code(.parameter)

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// The five-character SQLSTATE, e.g. `23505` for a unique violation.
    public let sqlState: String?
    /// What libpq or the server said; may quote data, so it is left out of `description`.
    public let message: String
    public let detail: String?
    public let constraint: String?

    init(_ code: Code, message: String, sqlState: String? = nil, detail: String? = nil, constraint: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.constraint = constraint
    }

    public var description: String {
        switch code {
        case .server: "PostgresError(server, sqlstate \(sqlState ?? "?"))"
        // libpq's reason for a failed connect names the host, the port and the user (never
        // the password): what an operator needs to fix it.
        case .decoding, .configuration, .connectionFailed, .parameter:
            "PostgresError(\(code): \(message.split(whereSeparator: \.isNewline).joined(separator: "; ")))"
        default: "PostgresError(\(code))"
        }
    }

    public var debugDescription: String {
        var text = "PostgresError(\(code)"
        if let sqlState { text += ", sqlstate \(sqlState)" }
        text += ", \(message.trimmingCharacters(in: .whitespacesAndNewlines))"
        // An integrity violation's detail quotes the row or key ("Failing row contains (…)"),
        // which may hold a secret (a webhook's signing secret): never in a log.
        if let detail, sqlState?.hasPrefix("23") != true { text += ", detail: \(detail)" }
        if let constraint { text += ", constraint: \(constraint)" }
        return text + ")"
    }

    /// 23505: a row with the same unique key exists.
    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// 40001 or 40P01: the transaction lost a race and may simply be retried.
    public var isRetryableConflict: Bool { sqlState == "40001" || sqlState == "40P01" }
    /// The server is unreachable or went away: retry after reconnecting.
    public var isConnectionError: Bool {
        code == .connectionFailed || code == .connectionLost || (sqlState?.hasPrefix("08") ?? false)
            || sqlState == "57P01" || sqlState == "57P02" || sqlState == "57P03"
    }
}
