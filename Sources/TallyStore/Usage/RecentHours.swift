import BillingEngine
import Foundation
import PostgresClient

/// A tenant's metric over the last day (or more), hour by hour, from its hourly rollups: the
/// anomaly alert's input.
public enum RecentHours {
    /// The value of each hourly rollup of `metric` of `tenant` in the `hours` hours up to
    /// `hour` (an hour's start; 0 is that hour), by age in hours, read as `aggregation`
    /// reads a rollup (`unique_count` as its event count). Hours without usage are absent.
    public static func byAge(
        tenant: UUID, metric: String, aggregation: Aggregation, upTo hour: Date, hours: Int = 25, on connection: isolated PostgresConnection
    ) throws -> [Int: Quantity] {
        let column: String
        switch aggregation {
        case .sum: column = "quantity_sum"
        case .max: column = "quantity_max"
        case .latest: column = "latest_quantity"
        case .count, .uniqueCount: column = "event_count"
        }
        let rows = try connection.query(
            """
            SELECT ((extract(epoch FROM $3::timestamptz - hour) / 3600)::int), \(column)::text FROM usage_rollups
             WHERE tenant_id = $1 AND metric = $2 AND hour > $3::timestamptz - $4::int * interval '1 hour' AND hour <= $3::timestamptz
            """, [tenant, metric, hour, hours])
        var byAge: [Int: Quantity] = [:]
        for row in rows { byAge[try row.decode(0, as: Int.self)] = try Quantity(parsingTotal: row.text(1) ?? "0") }
        return byAge
    }
}
