import ArgumentParser
import Foundation
import Logging
import PostgresClient
import TallyStore

/// `PROCESS migrate`: applies the numbered SQL migrations that the database lacks.
/// Idempotent; safe to run from several processes at once.
public struct MigrateCommand<Process: TallyProcess>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "migrate",
            abstract: "Apply the SQL migrations the database lacks (idempotent).",
            discussion: ConfigurationReport.helpText([.databaseURL, .migrationsDirectory])
        )
    }

    @Option(name: .customLong("dir"), help: "Folder of NNN_name.sql files (default: $TALLY_MIGRATIONS_DIR or ops/sql).")
    var directory: String?

    public init() {}

    public func run() async throws {
        let reader = ConfigurationReader()
        let logger = try LogBootstrap.configure(reader, label: "\(Process.processName).migrate")
        let migrations = try Migration.load(from: try directory ?? reader.string(.migrationsDirectory))
        let pool = PostgresPool(
            configuration: try PostgresConfiguration(url: try reader.string(.databaseURL)), size: 1, logger: logger)
        let applied = try await Migrator(pool: pool, logger: logger).migrate(migrations)
        await pool.close()
        let latest = migrations.last.map { "\($0.version)_\($0.name)" } ?? "none"
        print(applied.isEmpty ? "schema up to date (latest: \(latest))" : "applied \(applied.count) migration(s); latest: \(latest)")
    }
}
