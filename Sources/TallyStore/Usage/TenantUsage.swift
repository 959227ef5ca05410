import CivilTime
import Foundation
import PostgresClient

/// Deleting what the Aggregator stored for some tenants (benchmarks and tests clean up
/// with it; billed tenants are never deleted, their invoices keep gapless numbers).
///
/// The usage tables have no foreign key to `tenants`, so deleting tenants alone would
/// leave their usage behind: the events, their dedup ids, the hourly rollups and their
/// unique values, and the completed periods (whose totals and unique values go with
/// them, ON DELETE CASCADE). Keys, alerts and their firings go with a tenant.
public enum TenantUsage {
    public static let tables = ["usage_events", "usage_event_ids", "usage_rollups", "usage_rollup_values", "usage_periods"]

    /// Deletes the usage of `tenants`, and with `withTenants` the tenants too (then their
    /// configuration counters last, since deleting a tenant's alerts bumps them); returns
    /// how many tenants were deleted.
    @discardableResult
    public static func delete(of tenants: [UUID], withTenants: Bool, on connection: isolated PostgresConnection) throws -> Int {
        let ids = PostgresTextArray(tenants.map(\.lowercasedText))
        for table in tables {
            try connection.query("DELETE FROM \(table) WHERE tenant_id = ANY($1::uuid[])", [ids])
        }
        guard withTenants else { return 0 }
        let deleted = try connection.query("DELETE FROM tenants WHERE id = ANY($1::uuid[])", [ids]).affectedRows
        try connection.query("DELETE FROM tenant_config_versions WHERE tenant_id = ANY($1::uuid[])", [ids])
        return deleted
    }

    /// Vacuums (and analyzes) the tables `delete(of:withTenants:on:)` deletes from, outside
    /// any transaction: a benchmark's deletions then do not leave autovacuum working through
    /// millions of rows of a long-lived database during its next measurement.
    public static func vacuum(on connection: isolated PostgresConnection) throws {
        for table in tables + ["usage_period_totals", "usage_period_values", "tenants", "tenant_config_versions"] {
            try connection.query("VACUUM (ANALYZE) \(table)")
        }
    }
}
