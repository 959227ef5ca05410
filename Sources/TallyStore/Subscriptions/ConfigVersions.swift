import Foundation
import PostgresClient

/// How a cache of the configuration that usage decisions read learns what changed: the
/// catalog's counter (`catalog_version`: metrics and plans, bumped by triggers in the
/// transaction that changes them), read every time, and the log of the tenants whose
/// subscriptions, plan changes or alerts changed, or that were deleted, since it last
/// read (`log(since:on:)`, migration 024); the tenants it loads are first looked up
/// (`absent(of:on:)`). (The per-tenant counters of migration 017, `tenant_config_versions`,
/// are still kept for builds before 024.)
public enum ConfigVersions {
    /// Those of `tenants` that do not exist (no row in `tenants`): the tenants a cache is
    /// about to load. Each is looked up by key (LATERAL … LIMIT 1): as NOT EXISTS, the
    /// planner hashed the whole `tenants` table for every batch (135 ms with 431,000
    /// tenants), a cost growing with the tenants, not the batch.
    public static func absent(of tenants: [UUID], on connection: isolated PostgresConnection) throws -> Set<UUID> {
        guard !tenants.isEmpty else { return [] }
        let rows = try connection.query(
            """
            SELECT w.t FROM unnest($1::uuid[]) AS w (t)
              LEFT JOIN LATERAL (SELECT true AS known FROM tenants t WHERE t.id = w.t LIMIT 1) AS k ON true
             WHERE k.known IS NULL
            """, [PostgresTextArray(tenants.map(\.lowercasedText))])
        return Set(try rows.map { try $0.decode(0, as: UUID.self) })
    }

    /// What `log(since:on:)` read.
    public struct Log: Sendable {
        /// The catalog's counter.
        public var catalog: Int64 = 0
        /// The tenants whose configuration a transaction changed at or after `since`.
        public var changed: Set<UUID> = []
        /// Where the next read starts: the oldest transaction still running when this one
        /// read. Every change of an older one was committed (or never will be) by then, so
        /// it was read now or before.
        public var next: UInt64 = 0
        /// Whether the log lost rows the reader had not read (pruned past `since`): the
        /// reader must start again (or `since` was nil: it had not read the log yet).
        public var incomplete = false

        public init(catalog: Int64 = 0, changed: Set<UUID> = [], next: UInt64 = 0, incomplete: Bool = false) {
            self.catalog = catalog
            self.changed = changed
            self.next = next
            self.incomplete = incomplete
        }
    }

    /// Whether the schema has the log (migration 024): a build newer than the schema — the
    /// rollback test runs this build on the schema before the newest migration — reads
    /// the catalog's counter alone (`catalogVersion(on:)`) and takes every tenant as changed.
    public static func hasLog(on connection: isolated PostgresConnection) throws -> Bool {
        try connection.query("SELECT to_regclass('config_changes') IS NOT NULL")[0].decode(0, as: Bool.self)
    }

    /// The catalog's counter alone.
    public static func catalogVersion(on connection: isolated PostgresConnection) throws -> Int64 {
        try connection.query("SELECT version FROM catalog_version")[0].decode(0, as: Int64.self)
    }

    /// The catalog's counter and the tenants whose configuration changed in transactions
    /// from `since` (a `Log.next`) on, in one statement: one snapshot for all of it.
    public static func log(since: UInt64?, on connection: isolated PostgresConnection) throws -> Log {
        let rows = try connection.query(
            """
            SELECT NULL::uuid, version, pg_snapshot_xmin(pg_current_snapshot())::text, changes_pruned_through::text
              FROM catalog_version
            UNION ALL
            SELECT DISTINCT tenant_id, NULL::bigint, NULL::text, NULL::text FROM config_changes
             WHERE $1::text <> '' AND changed_by >= nullif($1::text, '')::xid8
            """, [since.map(String.init) ?? ""])
        var log = Log(incomplete: since == nil)
        for row in rows {
            if let tenant = try row.decode(0, as: UUID?.self) {
                log.changed.insert(tenant)
                continue
            }
            log.catalog = try row.decode(1, as: Int64.self)
            // xid8 as text (64 bits, never negative); unreadable, the reader starts again.
            let next = UInt64(try row.decode(2, as: String.self))
            let pruned = UInt64(try row.decode(3, as: String.self))
            log.next = next ?? 0
            if next == nil || pruned.map({ pruned in since.map { pruned >= $0 } ?? true }) ?? true { log.incomplete = true }
        }
        return log
    }

    /// Deletes the log's rows older than `age` (upkeep: a reader reads every batch) and
    /// records how far the log is pruned; returns how many rows went.
    ///
    /// Only rows of transactions older than every transaction still running go: a reader
    /// reads from the oldest transaction running when it last read, so a transaction held
    /// open for longer than `age` (an orphaned prepared transaction, a session idle in a
    /// transaction) would otherwise let the pruning take rows past every reader's position,
    /// and each of their next reads would find the log incomplete and start its cache again
    /// — every batch, for as long as that transaction stays open.
    @discardableResult
    public static func pruneLog(olderThan age: Duration, on connection: isolated PostgresConnection) throws -> Int {
        let rows = try connection.query(
            """
            WITH gone AS (
                DELETE FROM config_changes
                 WHERE changed_at < now() - make_interval(secs => $1::int)
                   AND changed_by < pg_snapshot_xmin(pg_current_snapshot())
                RETURNING changed_by
            ), pruned AS (
                UPDATE catalog_version SET changes_pruned_through = greatest(changes_pruned_through, (SELECT max(changed_by) FROM gone))
                 WHERE EXISTS (SELECT 1 FROM gone)
            )
            SELECT count(*) FROM gone
            """, [Int(age.components.seconds)])
        return try rows.first.map { Int(try $0.decode(0, as: Int64.self)) } ?? 0
    }
}
