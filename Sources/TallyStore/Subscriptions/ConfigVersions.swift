import Foundation
import PostgresClient

/// The change counters of the configuration that usage decisions read: one for the
/// catalog (`catalog_version`: metrics and plans) and one per tenant
/// (`tenant_config_versions`: its subscriptions and alerts), bumped by triggers in the
/// transaction that changes them. A cache compares them to what it holds — the catalog's
/// every time, a tenant's when it first loads the tenant — and reads the log of which
/// tenants changed since it last read (`log(since:on:)`, migration 024) to know which of
/// those it holds went stale.
public enum ConfigVersions {
    /// The catalog's counter, and the counters of the tenants that differ from the cache's.
    public struct Changes: Sendable {
        public var catalog: Int64 = 0
        public var tenants: [UUID: Int64] = [:]
        /// Those of the tenants asked about that do not exist (no row in `tenants`).
        public var absent: Set<UUID> = []
    }

    /// The catalog's counter, and the counter of each of `tenants` whose counter is not
    /// `held[tenant]` (a tenant not in `held` always comes back; one without a counter
    /// has 0). Only the few that moved come back for a batch of 40,000 tenants; each is
    /// looked up by key (LATERAL … LIMIT 1): as a join, the planner hashed every tenant's
    /// counter for each batch (38 ms with 250,000 tenants). The same statement says which
    /// tenants do not exist (probed by key in `tenants` beside the counter), so a batch
    /// whose tenants all exist runs no statement of its own to find unknown ones.
    public static func changes(of tenants: [UUID], held: [UUID: Int64], on connection: isolated PostgresConnection) throws -> Changes {
        let rows = try connection.query(
            """
            SELECT NULL::uuid, version, true FROM catalog_version
            UNION ALL
            SELECT w.t, coalesce(v.version, 0), k.known IS NOT NULL
              FROM unnest($1::uuid[], $2::bigint[]) AS w (t, held)
              LEFT JOIN LATERAL (SELECT v.version FROM tenant_config_versions v WHERE v.tenant_id = w.t LIMIT 1) AS v ON true
              LEFT JOIN LATERAL (SELECT true AS known FROM tenants t WHERE t.id = w.t LIMIT 1) AS k ON true
             WHERE coalesce(v.version, 0) <> w.held OR k.known IS NULL
            """, [PostgresTextArray(tenants.map(\.lowercasedText)), PostgresTextArray(tenants.map { String(held[$0] ?? -1) })])
        var changes = Changes()
        for row in rows {
            if let tenant = try row.decode(0, as: UUID?.self) {
                changes.tenants[tenant] = try row.decode(1, as: Int64.self)
                if try !row.decode(2, as: Bool.self) { changes.absent.insert(tenant) }
            } else {
                changes.catalog = try row.decode(1, as: Int64.self)
            }
        }
        return changes
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
    @discardableResult
    public static func pruneLog(olderThan age: Duration, on connection: isolated PostgresConnection) throws -> Int {
        let rows = try connection.query(
            """
            WITH gone AS (
                DELETE FROM config_changes WHERE changed_at < now() - make_interval(secs => $1::int) RETURNING changed_by
            ), pruned AS (
                UPDATE catalog_version SET changes_pruned_through = greatest(changes_pruned_through, (SELECT max(changed_by) FROM gone))
                 WHERE EXISTS (SELECT 1 FROM gone)
            )
            SELECT count(*) FROM gone
            """, [Int(age.components.seconds)])
        return try rows.first.map { Int(try $0.decode(0, as: Int64.self)) } ?? 0
    }
}
