import BillingEngine
import Foundation
import Logging
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

/// Migrations against a fresh database of their own on the real server.
@Suite("Migrations")
struct MigratorTests {
    let logger = Logger(label: "test.migrate")
    let directory = TestEnvironment.repositoryRoot + "/ops/sql"

    /// Creates an empty database, runs `body` with a pool on it, then drops it.
    func withFreshDatabase(_ body: @Sendable (PostgresPool) async throws -> Void) async throws {
        let admin = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: logger)
        let name = "tally_test_\(UUID().uuidString.prefix(8).lowercased())"
        try await admin.query("CREATE DATABASE \(name)")
        var configuration = try PostgresConfiguration(url: TestEnvironment.databaseURL)
        configuration.database = name
        let pool = PostgresPool(configuration: configuration, size: 2, logger: logger)
        try await withCleanup {
            try await body(pool)
        } cleanup: {
            await pool.close()
            try await Self.drop(name, with: admin)
            await admin.close()
        }
    }

    /// Drops a test database once its own pool is closed. Not `WITH (FORCE)`: that must
    /// also terminate an autovacuum worker busy in the new database, which our
    /// non-superuser role may not (42501, seen under load); a plain DROP makes the
    /// worker give way, and is retried while another session still leaves (55006).
    static func drop(_ name: String, with admin: PostgresPool) async throws {
        for attempt in 1...50 {
            do {
                try await admin.query("DROP DATABASE IF EXISTS \(name)")
                return
            } catch let error as PostgresError where error.sqlState == "55006" && attempt < 50 {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Every table and column, to compare the schema before and after.
    func schema(_ pool: PostgresPool) async throws -> [String] {
        try await pool.query(
            """
            SELECT table_name || '.' || column_name || ':' || data_type FROM information_schema.columns
            WHERE table_schema = 'public' ORDER BY 1
            """
        ).map { try $0.decode(0, as: String.self) }
    }

    @Test("migrations apply in order, and a second run changes nothing")
    func idempotent() async throws {
        let migrations = try Migration.load(from: directory)
        #expect(migrations.map(\.version) == migrations.map(\.version).sorted())
        try await withFreshDatabase { pool in
            let migrator = Migrator(pool: pool, logger: logger)
            let first = try await migrator.migrate(migrations)
            #expect(first == migrations.map(\.version))
            let schemaAfterFirst = try await schema(pool)
            let second = try await migrator.migrate(migrations)
            #expect(second.isEmpty)
            let schemaAfterSecond = try await schema(pool)
            #expect(schemaAfterSecond == schemaAfterFirst)
            let recorded = try await migrator.appliedVersions()
            #expect(recorded.count == migrations.count)
        }
    }

    @Test("concurrent migrators apply each migration exactly once")
    func concurrent() async throws {
        let migrations = try Migration.load(from: directory)
        try await withFreshDatabase { pool in
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<3 {
                    group.addTask { try await Migrator(pool: pool, logger: logger).migrate(migrations) }
                }
                return try await group.reduce(into: [Int]()) { $0 += $1 }
            }
            #expect(applied.sorted() == migrations.map(\.version))
        }
    }

    @Test("the seeded plans are exactly SPEC §2's")
    func seededPlans() async throws {
        let migrations = try Migration.load(from: directory)
        try await withFreshDatabase { pool in
            try await Migrator(pool: pool, logger: logger).migrate(migrations)
            // Version 1 of each, as the engine's constants say them (migration 022 moved them
            // from their columns into the catalog).
            let catalog = try await pool.withTransaction { try PlanCatalogRecords.load(on: $0) }
            #expect(catalog["starter"] == Plan.starter)
            #expect(catalog["professional"] == Plan.professional)
            #expect(catalog["enterprise"] == Plan.enterprise)
            #expect(catalog.versions.count == 3 && catalog.archived.isEmpty)
            // As jsonb writes an object: keys by length, then bytewise.
            let charges = try await pool.query(
                "SELECT charges::text FROM plan_versions WHERE plan_slug = 'starter'")[0].decode(0, as: String.self)
            #expect(
                charges
                    == #"[{"model": "standard", "quota": "1000", "metric": "api_calls", "included": "1000", "unit_price": "10", "enforcement": "soft"}, "#
                    + #"{"model": "standard", "quota": "50", "metric": "estimates", "included": "50", "unit_price": "500", "enforcement": "soft"}, "#
                    + #"{"model": "standard", "quota": "3", "metric": "users", "included": "3", "unit_price": "1000", "enforcement": "soft"}]"#)
        }
    }

    @Test("usage sums hold a billion events of the largest quantity without overflow")
    func noOverflow() async throws {
        let migrations = try Migration.load(from: directory)
        try await withFreshDatabase { pool in
            try await Migrator(pool: pool, logger: logger).migrate(migrations)
            let tenant = try await pool.query(
                "INSERT INTO tenants (name, billing_email) VALUES ('Big', 'big@example.test') RETURNING id")[0]
                .decode(0, as: UUID.self)
            try await pool.query(
                """
                INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count)
                VALUES ($1, 'api_calls', '2026-11-24T18:00:00Z', $2, 1000000000)
                """, [tenant, Decimal(string: "1000000000000000000000.9999")!])
            let sum = try await pool.query("SELECT quantity_sum FROM usage_rollups WHERE tenant_id = $1", [tenant])[0]
            #expect(sum.text(0) == "1000000000000000000000.9999")
            try await pool.query(
                """
                INSERT INTO usage_events (tenant_id, event_id, metric, quantity, occurred_at, occurred_month)
                VALUES ($1, 'e1', 'api_calls', $2, now(), date_trunc('month', now() AT TIME ZONE 'UTC')::date)
                """,
                [tenant, Decimal(string: "1000000000000")!])
        }
    }

    @Test(
        "018 keys usage_event_ids by (event_id, tenant_id): swapping in a key built beforehand with CREATE INDEX CONCURRENTLY, or building it",
        arguments: [true, false])
    func eventIDKey(prebuilt: Bool) async throws {
        let migrations = try Migration.load(from: directory)
        try await withFreshDatabase { pool in
            let migrator = Migrator(pool: pool, logger: logger)
            try await migrator.migrate(migrations.filter { $0.version < 18 })
            try await pool.query(
                """
                INSERT INTO usage_event_ids (tenant_id, event_id)
                SELECT gen_random_uuid(), 'e' || g FROM generate_series(1, 1000) AS g
                """)
            var built: Int64?
            if prebuilt {
                // As an operator would, beforehand, without blocking writers (outside a transaction).
                try await pool.query("CREATE UNIQUE INDEX CONCURRENTLY usage_event_ids_by_id ON usage_event_ids (event_id, tenant_id)")
                built = try await pool.query("SELECT 'usage_event_ids_by_id'::regclass::oid::int8")[0].decode(0, as: Int64.self)
            }
            try await migrator.migrate(migrations)
            let key = try await pool.query(
                """
                SELECT c.oid::int8, pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = 'usage_event_ids'::regclass AND i.indisprimary
                """)
            try #require(key.count == 1)
            #expect(key[0].text(1)?.hasSuffix("USING btree (event_id, tenant_id)") == true, "\(key[0].text(1) ?? "")")
            // The index built beforehand is the key now (swapped, not built again).
            if let built { #expect(try key[0].decode(0, as: Int64.self) == built) }
            let others = try await pool.query(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'usage_event_ids' AND indexname = 'usage_event_ids_by_id'")
            #expect(try others[0].decode(0, as: Int.self) == 0)
            // Still the dedup: the same (tenant, id) again inserts nothing.
            let again = try await pool.query(
                "INSERT INTO usage_event_ids (tenant_id, event_id) SELECT tenant_id, event_id FROM usage_event_ids ON CONFLICT DO NOTHING")
            #expect(again.affectedRows == 0)
        }
    }

    @Test("an applied migration that was edited is refused, naming it")
    func editedMigration() async throws {
        let migrations = try Migration.load(from: directory)
        var edited = migrations
        edited[0] = Migration(version: edited[0].version, name: edited[0].name, sql: edited[0].sql + "\n-- edited")
        try await withFreshDatabase { [edited] pool in
            let migrator = Migrator(pool: pool, logger: logger)
            try await migrator.migrate(migrations)
            let error = await #expect(throws: MigrationError.self) { try await migrator.migrate(edited) }
            #expect(error == .checksumMismatch(version: edited[0].version, name: edited[0].name))
        }
    }

    @Test("badly named files and duplicate versions are refused")
    func fileNames() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "SELECT 1;".write(toFile: folder + "/001_a.sql", atomically: true, encoding: .utf8)
        try "SELECT 1;".write(toFile: folder + "/001_b.sql", atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.duplicateVersion(1)) { try Migration.load(from: folder) }
        try FileManager.default.removeItem(atPath: folder + "/001_b.sql")
        try "SELECT 1;".write(toFile: folder + "/two.sql", atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.badFileName("two.sql")) { try Migration.load(from: folder) }
    }
}
