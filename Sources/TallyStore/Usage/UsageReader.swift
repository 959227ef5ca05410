import BillingEngine
import Foundation
import PostgresClient

/// Reads usage values: each metric's aggregation over a half-open time range,
/// from the hourly rollups for the whole hours inside it and from the raw events
/// for the partial hours at its edges — so the answer always equals aggregating
/// the raw events, at the cost of rollup rows plus at most two hours of events.
public enum UsageReader {
    /// Every metric's value for `tenant` over `span`, using `catalog`'s aggregations.
    /// Metrics without events in the span are absent. A period the Aggregator keeps
    /// totals of (`UsagePeriodTotals`) is read from them; any other range from the rollups.
    public static func values(
        tenant: UUID, over span: Period, catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> [String: Quantity] {
        let period = TenantPeriod(tenant: tenant, span: span)
        if let totals = try UsagePeriodTotals.values(of: [period], catalog: catalog, on: connection)[period] { return totals }
        return try rangeValues(tenant: tenant, over: span, catalog: catalog, on: connection)
    }

    /// The same values from the hourly rollups and the edge events, for any range: the
    /// reference the period totals are checked against.
    public static func rangeValues(
        tenant: UUID, over span: Period, catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> [String: Quantity] {
        // Whole hours inside the span: [first hour boundary ≥ start, last hour boundary ≤ end).
        let hour: Int64 = 3_600_000_000
        let start = span.start.microsecondsSinceEpoch
        // Usage times are after 1970, so integer division floors.
        let firstHour = Instant(microsecondsSinceEpoch: (start + hour - 1) / hour * hour)
        let lastHour = Instant(microsecondsSinceEpoch: span.end.microsecondsSinceEpoch / hour * hour)
        let parameters: [any PostgresEncodable] = [
            tenant, span.start.date, span.end.date, firstHour.date, lastHour.date,
        ]
        var values: [String: Quantity] = [:]
        for row in try connection.query(scalarAggregates, parameters) {
            let metric = try row.decode(0, as: String.self)
            let value: String?
            switch catalog.aggregation(for: metric) {
            case .sum: value = row.text(1)
            case .count: value = row.text(2)
            case .max: value = row.text(3)
            case .latest: value = row.text(4)
            case .uniqueCount: continue
            }
            values[metric] = try Quantity(parsingTotal: value ?? "0")
        }
        let uniqueFields = catalog.aggregations.compactMap { metric, aggregation -> (String, String)? in
            if case .uniqueCount(let field) = aggregation { return (metric, field) }
            return nil
        }
        if !uniqueFields.isEmpty {
            for row in try connection.query(uniqueAggregates, parameters) {
                values[try row.decode(0, as: String.self)] = Quantity(units: try row.decode(1, as: Int64.self))
            }
        }
        return values
    }

    /// Whole hours from the rollups, edge hours from usage_events (pruned to the
    /// months of the range); `latest` compares (time, id bytewise, quantity).
    /// $2, $3: the span; $4, $5: its whole hours. Edge events are those in [$2, min($4, $3))
    /// or [max($5, $2), $3) — two index ranges (when the span has no whole hour, both
    /// are the span itself, and a row matching both is still read once).
    static let pieces = """
        WITH edges AS (
            SELECT e.* FROM usage_events e
             WHERE e.tenant_id = $1
               AND ((e.occurred_at >= $2 AND e.occurred_at < least($4::timestamptz, $3::timestamptz))
                    OR (e.occurred_at >= greatest($5::timestamptz, $2::timestamptz) AND e.occurred_at < $3))
               AND e.occurred_month BETWEEN date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC')::date
                                        AND date_trunc('month', $3::timestamptz AT TIME ZONE 'UTC')::date
        )
        """

    static let scalarAggregates =
        pieces + """
            , pieces AS (
                SELECT metric, quantity_sum AS s, event_count AS c, quantity_max AS mx,
                       latest_at AS la, latest_event_id AS li, latest_quantity AS lq
                  FROM usage_rollups WHERE tenant_id = $1 AND hour >= $4 AND hour < $5
                UNION ALL
                SELECT metric, quantity, 1, quantity, occurred_at, event_id, quantity FROM edges
            )
            SELECT metric, sum(s), sum(c), max(mx),
                   (array_agg(lq ORDER BY la DESC, li COLLATE "C" DESC, lq DESC))[1]
              FROM pieces GROUP BY metric
            """

    static let uniqueAggregates =
        pieces + """
            SELECT metric, count(DISTINCT value) FROM (
                SELECT metric, value FROM usage_rollup_values WHERE tenant_id = $1 AND hour >= $4 AND hour < $5
                UNION ALL
                SELECT e.metric, tally_unique_value(e.metadata ->> m.unique_field) FROM edges e
                  JOIN billable_metrics m ON m.code = e.metric AND m.aggregation = 'unique_count'
                 WHERE jsonb_typeof(e.metadata -> m.unique_field) IN ('string', 'number', 'boolean')
            ) AS v GROUP BY metric
            """
}

/// The billable metrics table as the engine's `MetricCatalog`.
public enum MetricCatalogRecords {
    public static func load(on connection: isolated PostgresConnection) throws -> MetricCatalog {
        var aggregations: [String: Aggregation] = [:]
        for row in try connection.query("SELECT code, aggregation, unique_field FROM billable_metrics") {
            let name = try row.decode(1, as: String.self)
            if let aggregation = MetricCatalog.aggregation(named: name, field: try row.decode(2, as: String?.self)) {
                aggregations[try row.decode(0, as: String.self)] = aggregation
            }
        }
        return MetricCatalog(aggregations)
    }

    /// The unit of each billable metric (`api_call`, `user`), as the dashboard labels it.
    public static func units(on connection: isolated PostgresConnection) throws -> [String: String] {
        var units: [String: String] = [:]
        for row in try connection.query("SELECT code, unit FROM billable_metrics") {
            units[try row.decode(0, as: String.self)] = try row.decode(1, as: String?.self)
        }
        return units
    }
}
