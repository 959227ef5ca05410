import Foundation
import PostgresClient

/// The change counters of the configuration that usage decisions read: one for the
/// catalog (`catalog_version`: metrics and plans) and one per tenant
/// (`tenant_config_versions`: its subscriptions and alerts), bumped by triggers in the
/// transaction that changes them. A cache compares them to what it holds.
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
}
