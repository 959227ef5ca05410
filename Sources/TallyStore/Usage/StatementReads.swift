import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// The reads a usage statement makes besides the usage totals (`UsageReader`,
/// `UsagePeriodTotals`): its tenants' tax rate and currency, and which tenants have any
/// hourly rollup in a period.
public enum StatementReads {
    /// The tenant's tax rate and currency, or nil when there is no such tenant.
    public static func terms(of tenant: UUID, on connection: isolated PostgresConnection) throws -> (taxRateBps: Int, currency: String)? {
        guard let terms = try connection.query("SELECT tax_rate_bps, currency FROM tenants WHERE id = $1", [tenant]).first else {
            return nil
        }
        return (try terms.decode(0), try terms.decode(1))
    }

    /// The tax rate of each of `tenants` that exists.
    public static func taxRates(of tenants: [UUID], on connection: isolated PostgresConnection) throws -> [UUID: Int] {
        var taxRates: [UUID: Int] = [:]
        for row in try connection.query(
            "SELECT id, tax_rate_bps FROM tenants WHERE id = ANY($1::uuid[])", [PostgresTextArray(tenants.map(\.lowercasedText))])
        {
            taxRates[try row.decode(0, as: UUID.self)] = try row.decode(1, as: Int.self)
        }
        return taxRates
    }

    /// Which tenants of `periods` have any hourly rollup in their period (every stored
    /// event has one), in one statement.
    public static func tenantsWithUsage(_ periods: [TenantPeriod], on connection: isolated PostgresConnection) throws -> Set<UUID> {
        guard !periods.isEmpty else { return [] }
        let hour: Int64 = 3_600_000_000
        let rows = try connection.query(
            """
            SELECT p.tenant_id FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS p (tenant_id, first_hour, period_end)
             WHERE EXISTS (SELECT 1 FROM usage_rollups r WHERE r.tenant_id = p.tenant_id AND r.hour >= p.first_hour AND r.hour < p.period_end)
            """,
            [
                PostgresTextArray(periods.map(\.tenant.lowercasedText)),
                PostgresTextArray(
                    periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.span.start.microsecondsSinceEpoch / hour * hour).description }),
                PostgresTextArray(periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.span.end.microsecondsSinceEpoch).description }),
            ])
        return Set(try rows.map { try $0.decode(0, as: UUID.self) })
    }
}
