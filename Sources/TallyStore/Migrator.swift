import Foundation
import Logging
import PostgresClient

/// Brings the schema up to date: applies, in version order and each in its own
/// transaction, every migration not yet recorded in `schema_migrations`.
///
/// Idempotent and safe to run from many processes at once (a session advisory
/// lock serializes them); a migration edited after it was applied is refused.
public struct Migrator: Sendable {
    let pool: PostgresPool
    let logger: Logger
    /// Arbitrary but fixed: the advisory lock key all Tally migrators agree on.
    static let lockKey: Int64 = 0x7A11_7A11

    public init(pool: PostgresPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Applies what is missing of `migrations` and returns the versions it applied.
    @discardableResult
    public func migrate(_ migrations: [Migration]) async throws -> [Int] {
        try await pool.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock($1)", [Self.lockKey])
            do {
                let applied = try await apply(migrations, on: connection)
                try await connection.query("SELECT pg_advisory_unlock($1)", [Self.lockKey])
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock($1)", [Self.lockKey])
                throw error
            }
        }
    }

    /// The versions recorded as applied, with their checksums.
    public func appliedVersions() async throws -> [Int: String] {
        try await pool.withConnection { connection in try await Self.recorded(on: connection) }
    }

    private func apply(_ migrations: [Migration], on connection: PostgresConnection) async throws -> [Int] {
        try await connection.executeScript(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer     PRIMARY KEY,
                name        text        NOT NULL,
                checksum    text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """)
        let recorded = try await Self.recorded(on: connection)
        let known = Set(migrations.map(\.version))
        if let stranger = recorded.keys.sorted().first(where: { !known.contains($0) }) {
            throw MigrationError.unknownAppliedVersion(stranger)
        }
        var applied: [Int] = []
        for migration in migrations {
            if let checksum = recorded[migration.version] {
                guard checksum == migration.checksum else {
                    throw MigrationError.checksumMismatch(version: migration.version, name: migration.name)
                }
                continue
            }
            logger.info("applying migration", metadata: ["migration.version": "\(migration.version)", "migration.name": "\(migration.name)"])
            try await connection.withTransaction { connection in
                try connection.executeScript(migration.sql)
                try connection.query(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    [migration.version, migration.name, migration.checksum])
            }
            applied.append(migration.version)
        }
        return applied
    }

    private static func recorded(on connection: PostgresConnection) async throws -> [Int: String] {
        let rows = try await connection.query("SELECT version, checksum FROM schema_migrations")
        var versions: [Int: String] = [:]
        for row in rows {
            versions[try row.decode(0, as: Int.self)] = try row.decode(1, as: String.self)
        }
        return versions
    }
}
