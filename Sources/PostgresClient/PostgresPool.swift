import Logging

/// A fixed number of `PostgresConnection`s shared by the tasks of one process.
///
/// `withConnection` lends a connection for the duration of a closure; callers beyond
/// `size` wait in arrival order. Connections are opened lazily and re-open by
/// themselves after the server restarts, so a pool outlives database outages.
public actor PostgresPool {
    private let configuration: PostgresConfiguration
    private let size: Int
    private let logger: Logger
    private var idle: [PostgresConnection] = []
    private var opened = 0
    private var waiters: [CheckedContinuation<PostgresConnection, Never>] = []

    public init(configuration: PostgresConfiguration, size: Int, logger: Logger) {
        precondition(size > 0, "a pool needs at least one connection")
        self.configuration = configuration
        self.size = size
        self.logger = logger
    }

    /// Runs `body` with a connection of its own, returned to the pool afterwards.
    public func withConnection<T: Sendable>(
        _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await checkOut()
        defer { checkIn(connection) }
        return try await body(connection)
    }

    /// Runs `body` in a transaction on a pooled connection (see `PostgresConnection.withTransaction`).
    @discardableResult
    public func withTransaction<T: Sendable>(
        isolation: PostgresConnection.IsolationLevel = .readCommitted,
        _ body: @Sendable (isolated PostgresConnection) throws -> T
    ) async throws -> T {
        try await withConnection { connection in
            try await connection.withTransaction(isolation: isolation, body)
        }
    }

    /// One parameterized statement on any free connection.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> PostgresRows {
        try await withConnection { connection in try await connection.query(sql, parameters) }
    }

    /// Closes every idle connection (on shutdown).
    public func close() async {
        for connection in idle { await connection.close() }
        idle.removeAll()
    }

    private func checkOut() async throws -> PostgresConnection {
        if let connection = idle.popLast() { return connection }
        if opened < size {
            opened += 1
            do {
                return try await PostgresConnection.connect(configuration: configuration, logger: logger)
            } catch {
                opened -= 1
                throw error
            }
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    private func checkIn(_ connection: PostgresConnection) {
        if waiters.isEmpty {
            idle.append(connection)
        } else {
            waiters.removeFirst().resume(returning: connection)
        }
    }
}
