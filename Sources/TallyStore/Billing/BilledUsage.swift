import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// What each invoice billed per metric and period (`billed_usage`): the snapshots late
/// usage is measured against (the latest per subscription, period and metric counts).
public enum BilledUsage {
    /// One metric of one period as an invoice billed it.
    public struct Snapshot: Sendable, Equatable {
        public let subscription: UUID
        public let periodStart: Date
        public let metric: String
        public let invoice: UUID
        public let value: Quantity
        public let amount: Cents

        public init(subscription: UUID, periodStart: Date, metric: String, invoice: UUID, value: Quantity, amount: Cents) {
            self.subscription = subscription
            self.periodStart = periodStart
            self.metric = metric
            self.invoice = invoice
            self.value = value
            self.amount = amount
        }
    }

    /// The latest snapshot of a subscription's period and metric.
    public struct Latest: Sendable, Equatable {
        public let subscription: UUID
        public let periodStart: Date
        public let metric: String
        /// The value billed, exact decimal text.
        public let value: String?
        public let billedAt: Date
    }

    /// An invoiced period whose usage may have changed since it was billed.
    public struct CheckedPeriod: Sendable, Equatable {
        public let subscription: UUID
        public let tenant: UUID
        public let period: Period

        public init(subscription: UUID, tenant: UUID, period: Period) {
            self.subscription = subscription
            self.tenant = tenant
            self.period = period
        }
    }

    /// Inserts the snapshots of a batch, stamped `billedAt`; one statement in the caller's transaction.
    public static func insert(_ snapshots: [Snapshot], billedAt: Date, on connection: isolated PostgresConnection) throws {
        guard !snapshots.isEmpty else { return }
        func text(_ transform: (Snapshot) -> String) -> PostgresTextArray { PostgresTextArray(snapshots.map(transform)) }
        try connection.query(
            """
            INSERT INTO billed_usage (subscription_id, period_start, metric, invoice_id, value, amount_cents, billed_at)
            SELECT subscription, period_start, metric, invoice, value, amount, $7
              FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::uuid[], $5::numeric[], $6::bigint[])
                   AS u (subscription, period_start, metric, invoice, value, amount)
            """,
            [
                text { $0.subscription.uuidString }, text { PostgresTimestamp($0.periodStart).description }, text(\.metric),
                text { $0.invoice.uuidString }, text(\.value.description), text { String($0.amount.value) }, billedAt,
            ])
    }

    /// Inserts one snapshot, stamped `billedAt`, in the caller's transaction.
    public static func insert(_ snapshot: Snapshot, billedAt: Date, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            INSERT INTO billed_usage (subscription_id, period_start, metric, invoice_id, value, amount_cents, billed_at)
            VALUES ($1, $2, $3, $4, $5::numeric, $6, $7)
            """,
            [
                snapshot.subscription, snapshot.periodStart, snapshot.metric, snapshot.invoice, snapshot.value.description,
                snapshot.amount.value, billedAt,
            ])
    }

    /// The latest snapshot of every period and metric of `subscriptions`, in one read.
    public static func latest(of subscriptions: [UUID], on connection: isolated PostgresConnection) throws -> [Latest] {
        let rows = try connection.query(
            """
            SELECT DISTINCT ON (subscription_id, period_start, metric) subscription_id, period_start, metric, value::text, billed_at
              FROM billed_usage WHERE subscription_id = ANY($1::uuid[])
             ORDER BY subscription_id, period_start, metric, billed_at DESC
            """, [PostgresTextArray(subscriptions.map(\.lowercasedText))])
        return try rows.map {
            Latest(
                subscription: try $0.decode(0, as: UUID.self), periodStart: try $0.decode(1, as: Date.self), metric: try $0.decode(2),
                value: $0.text(3), billedAt: try $0.decode(4, as: Date.self))
        }
    }

    /// Of the invoiced `periods`, the subscriptions whose usage may have changed since it
    /// was billed, in one statement: a period is left out only when what was last billed
    /// per metric still equals its complete totals (same span), or when it was billed zero
    /// and has no rollup in its hours; `unique_count` metrics, and periods without complete
    /// totals but with usage, are always kept. Runs with nested loops off and 64MB of
    /// work memory, set for this statement only (`SET LOCAL`, then reset): the caller's
    /// transaction is required.
    public static func possiblyChanged(
        _ periods: [CheckedPeriod], catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> Set<UUID> {
        guard !periods.isEmpty else { return [] }
        let aggregations = catalog.aggregations.sorted { $0.key < $1.key }
        let names = aggregations.map { metric, aggregation -> String in
            switch aggregation {
            case .sum: "sum"
            case .count: "count"
            case .max: "max"
            case .latest: "latest"
            case .uniqueCount: "unique_count"
            }
        }
        // PostgreSQL guesses 10 rows for an unnest: it would probe three indexes per billed
        // row (11 s for 640,000 rows here) where hashing the tables takes 4; and sorting the
        // snapshots spills to disk below 64MB. Both only for this statement.
        try connection.executeScript("SET LOCAL enable_nestloop = off; SET LOCAL work_mem = '64MB'")
        defer { try? connection.executeScript("RESET enable_nestloop; RESET work_mem") }
        let rows = try connection.query(
            """
            WITH checked AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[])
                    AS c (subscription_id, tenant_id, period_start, period_end)
            ), billed AS (
                SELECT DISTINCT ON (c.subscription_id, c.period_start, b.metric)
                       c.subscription_id, c.tenant_id, c.period_start, c.period_end, b.metric, b.value
                  FROM checked c JOIN billed_usage b ON b.subscription_id = c.subscription_id AND b.period_start = c.period_start
                 ORDER BY c.subscription_id, c.period_start, b.metric, b.billed_at DESC
            )
            SELECT DISTINCT b.subscription_id
              FROM billed b
              LEFT JOIN unnest($5::text[], $6::text[]) AS m (metric, aggregation) ON m.metric = b.metric
              LEFT JOIN usage_periods p
                     ON p.tenant_id = b.tenant_id AND p.period_start = b.period_start AND p.period_end = b.period_end
              LEFT JOIN usage_period_totals t
                     ON t.tenant_id = b.tenant_id AND t.period_start = b.period_start AND t.period_end = b.period_end
                    AND t.metric = b.metric
             WHERE CASE
                WHEN m.aggregation = 'unique_count' THEN true
                WHEN p.tenant_id IS NULL THEN b.value <> 0 OR EXISTS (
                    SELECT 1 FROM usage_rollups r
                     WHERE r.tenant_id = b.tenant_id AND r.hour >= date_trunc('hour', b.period_start, 'UTC') AND r.hour < b.period_end)
                ELSE coalesce(CASE m.aggregation WHEN 'count' THEN t.event_count WHEN 'max' THEN t.quantity_max
                                                 WHEN 'latest' THEN t.latest_quantity ELSE t.quantity_sum END, 0) <> b.value
             END
            """,
            [
                PostgresTextArray(periods.map(\.subscription.lowercasedText)), PostgresTextArray(periods.map(\.tenant.lowercasedText)),
                PostgresTextArray(periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.period.start.microsecondsSinceEpoch).description }),
                PostgresTextArray(periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.period.end.microsecondsSinceEpoch).description }),
                PostgresTextArray(aggregations.map(\.key)), PostgresTextArray(names),
            ])
        return Set(try rows.map { try $0.decode(0, as: UUID.self) })
    }
}
