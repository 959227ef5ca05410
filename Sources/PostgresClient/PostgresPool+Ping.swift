extension PostgresPool {
    /// Asks the server for the smallest answer (`SELECT 1`) on any pooled connection:
    /// the readiness probe of every executable. Throws when the database cannot be reached.
    public func ping() async throws {
        try await query("SELECT 1")
    }
}
