import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// A tenant's usage over one range of time (a billing period, a trial, or a calendar month).
public struct TenantPeriod: Sendable, Hashable {
    public let tenant: UUID
    public let span: Period

    public init(tenant: UUID, span: Period) {
        self.tenant = tenant
        self.span = span
    }
}

/// Usage totals per tenant and period, kept complete as usage arrives (`usage_periods`,
/// `usage_period_totals`, `usage_period_values`; migration 017).
///
/// A period is completed once — its totals computed from the hourly rollups and the
/// events at its edges — and from then on the Aggregator adds each event it stores to
/// every completed period of its tenant containing the event's time, in the statement
/// that stores the event. Reading a period is then one row per metric.
///
/// Completing a period and storing its tenant's events must not interleave. A batch
/// completes the periods its events fall in before storing them, in its transaction:
/// the one that inserts a period's `usage_periods` row completes it, and another doing
/// so at the same time waits on that row, then finds the period complete. A batch
/// whose configuration does not know a period yet (a subscription created meanwhile)
/// cannot be storing events in it unseen: batches hold their tenants' usage locks
/// shared (`lockUsage`) from before they read the configuration until they commit, and
/// a change to a tenant's subscriptions takes the lock exclusive (migration 023), so it
/// waits for them, and batches after it read what it committed.
public enum UsagePeriodTotals {
    /// Tenants share their locks by bucket: a lock per tenant would be 40,000 locks for a
    /// batch of 40,000 tenants, beyond PostgreSQL's lock table (`max_locks_per_transaction`
    /// × connections, a few thousand per session: "out of shared memory"). 512 buckets
    /// keep a batch at 1,024 locks at most; tenants of one bucket wait for one another
    /// only where a lock is exclusive. The two-key advisory locks (class, bucket) are a key
    /// space apart from the one-key locks taken elsewhere. Migration 023 takes the usage
    /// lock (class 13) with the same buckets.
    static let lockBuckets = 512

    /// The buckets of `tenants` ($1) in one order, locked by `function(class, bucket)`.
    private static func lockStatement(class lockClass: Int, function: String) -> String {
        """
        SELECT count(\(function)(\(lockClass), b)) FROM (
            SELECT DISTINCT (hashtextextended(t::text, \(lockClass)) & \(lockBuckets - 1))::int AS b
              FROM unnest($1::uuid[]) AS t
             ORDER BY 1
        ) AS keys
        """
    }

    /// Takes the usage locks of `tenants` shared (transaction-scoped, in one statement
    /// and one order): transactions storing a tenant's events do not wait for one
    /// another, and a change to the tenant's subscriptions, which takes the lock
    /// exclusive, waits until every transaction holding it has committed.
    public static func lockUsage(_ tenants: [UUID], on connection: isolated PostgresConnection) throws {
        guard !tenants.isEmpty else { return }
        try connection.query(
            lockStatement(class: 13, function: "pg_advisory_xact_lock_shared"), [PostgresTextArray(tenants.map(\.lowercasedText))])
    }

    /// Takes the evaluation locks of `tenants` (exclusive, one statement, one order), after
    /// their events are stored: of two transactions storing usage of one tenant that read
    /// it (`UsageStateEvaluator`), the second reads once the first committed.
    public static func lockEvaluation(_ tenants: [UUID], on connection: isolated PostgresConnection) throws {
        guard !tenants.isEmpty else { return }
        try connection.query(
            lockStatement(class: 7, function: "pg_advisory_xact_lock"), [PostgresTextArray(tenants.map(\.lowercasedText))])
    }

    /// Completes the periods of `periods` that are not complete yet, of existing tenants:
    /// those whose `usage_periods` row this transaction inserts (a period another
    /// transaction is completing is waited for, then found complete); returns those of
    /// `periods` that are complete now (their tenant exists).
    ///
    /// `periodsPerStatement` periods a statement, in one order (tenant, then period): a
    /// batch that first sees 50,000 tenants completes 50,000 periods, and their arrays as
    /// one statement's parameters were tens of MB at once — as strings, as the statement's
    /// text, and in libpq's output buffer, which keeps the size it grew to for as long as
    /// the connection lives.
    @discardableResult
    public static func complete(_ periods: Set<TenantPeriod>, on connection: isolated PostgresConnection) throws -> Set<TenantPeriod> {
        guard !periods.isEmpty else { return [] }
        let sorted = periods.sorted {
            $0.tenant != $1.tenant ? $0.tenant.precedes($1.tenant) : ($0.span.start, $0.span.end) < ($1.span.start, $1.span.end)
        }
        var existing = Set<UUID>()
        for start in stride(from: 0, to: sorted.count, by: periodsPerStatement) {
            let chunk = Array(sorted[start..<min(start + periodsPerStatement, sorted.count)])
            for row in try connection.query(completeStatement, arrays(chunk)) { existing.insert(try row.decode(0, as: UUID.self)) }
        }
        return periods.filter { existing.contains($0.tenant) }
    }

    /// The most periods `complete` passes to one statement.
    public static let periodsPerStatement = 5_000

    /// Every metric's value over each of `periods` that is complete, with `catalog`'s
    /// aggregations; metrics without usage are absent, and so are periods not complete.
    public static func values(
        of periods: Set<TenantPeriod>, catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> [TenantPeriod: [String: Quantity]] {
        guard !periods.isEmpty else { return [:] }
        let parameters = arrays(Array(periods))
        var values: [TenantPeriod: [String: Quantity]] = [:]
        for row in try connection.query(readStatement, parameters) {
            let period = try tenantPeriod(row)
            if values[period] == nil { values[period] = [:] }
            guard let metric = try row.decode(3, as: String?.self) else { continue }
            // unique_count is read below, from its values.
            if case .uniqueCount = catalog.aggregation(for: metric) { continue }
            values[period, default: [:]][metric] = try Quantity(parsingTotal: aggregateText(row, catalog.aggregation(for: metric)) ?? "0")
        }
        let unique = Set(
            catalog.aggregations.compactMap { metric, aggregation -> String? in
                if case .uniqueCount = aggregation { return metric }
                return nil
            })
        if !unique.isEmpty {
            for row in try connection.query(uniqueStatement, parameters) {
                let metric = try row.decode(3, as: String.self)
                guard unique.contains(metric) else { continue }
                values[try tenantPeriod(row), default: [:]][metric] = Quantity(units: try row.decode(4, as: Int64.self))
            }
        }
        return values
    }

    /// The totals rows of each of `periods` that is complete, as committed now
    /// (`StoredTotal`; the rows `values(of:catalog:on:)` reads); metrics without usage and
    /// periods not complete are absent.
    public static func storedTotals(
        of periods: Set<TenantPeriod>, on connection: isolated PostgresConnection
    ) throws -> [TenantPeriod: [String: StoredTotal]] {
        guard !periods.isEmpty else { return [:] }
        var totals: [TenantPeriod: [String: StoredTotal]] = [:]
        for row in try connection.query(readStatement, arrays(Array(periods))) {
            guard let metric = try row.decode(3, as: String?.self), let count = row.text(5).flatMap({ Int64($0) }) else { continue }
            let period = try tenantPeriod(row)
            totals[period, default: [:]][metric] = StoredTotal(
                period: period, metric: metric, eventCount: count, sum: row.text(4) ?? "0", max: row.text(6), latest: row.text(7))
        }
        return totals
    }

    /// Every metric's value over each of `periods`: from the totals where the period is
    /// complete, and for the others from the hourly rollups and the edge events — two
    /// statements whatever the number of periods. Metrics without usage are absent.
    public static func exactValues(
        of periods: Set<TenantPeriod>, catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> [TenantPeriod: [String: Quantity]] {
        var values = try self.values(of: periods, catalog: catalog, on: connection)
        let rest = periods.filter { values[$0] == nil }
        guard !rest.isEmpty else { return values }
        for period in rest { values[period] = [:] }
        for row in try connection.query(rollupStatement, arrays(Array(rest))) {
            let metric = try row.decode(3, as: String.self)
            // A unique_count metric whose events hold no value of its field is absent, as
            // `UsageReader` has it.
            if let text = aggregateText(row, catalog.aggregation(for: metric)) {
                values[try tenantPeriod(row), default: [:]][metric] = try Quantity(parsingTotal: text)
            }
        }
        return values
    }

    /// The tenant and period of a row that starts with `tenant_id, period_start, period_end`.
    private static func tenantPeriod(_ row: PostgresRow) throws -> TenantPeriod {
        TenantPeriod(
            tenant: try row.decode(0, as: UUID.self),
            span: Period(start: Instant(try row.decode(1, as: Date.self)), end: Instant(try row.decode(2, as: Date.self))))
    }

    /// The column of `aggregation` in a row of `…, metric, sum, count, max, latest[, unique]`
    /// (columns 4 to 8), as text.
    private static func aggregateText(_ row: PostgresRow, _ aggregation: Aggregation) -> String? {
        switch aggregation {
        case .sum: row.text(4)
        case .count: row.text(5)
        case .max: row.text(6)
        case .latest: row.text(7)
        case .uniqueCount: row.columns.count > 8 ? row.text(8) : nil
        }
    }

    private static func arrays(_ periods: [TenantPeriod]) -> [any PostgresEncodable] {
        [
            PostgresTextArray(periods.map(\.tenant.lowercasedText)),
            PostgresTextArray(periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.span.start.microsecondsSinceEpoch).description }),
            PostgresTextArray(periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.span.end.microsecondsSinceEpoch).description }),
        ]
    }

    /// The periods asked for ($1 tenants, $2 starts, $3 ends), as rows.
    static let wanted = """
        SELECT w.tenant_id, w.period_start, w.period_end
          FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w (tenant_id, period_start, period_end)
        """

    /// The periods asked for, with their whole hours [first_hour, last_hour); with
    /// `incompleteOnly`, only those of existing tenants that are not complete yet.
    ///
    /// Both checks are index probes per period asked for, through LATERAL subqueries with
    /// LIMIT (which the planner cannot turn into joins): as EXISTS and NOT EXISTS, it
    /// hashed the whole of `tenants` and `usage_periods` for every batch part instead —
    /// 190 ms a part with 377,000 tenants and 327,000 periods on the dev database, a
    /// cost that grew with the history, not with the batch.
    static func periodsCTE(incompleteOnly: Bool, named name: String = "missing") -> String {
        """
        \(name) AS (
            SELECT DISTINCT w.tenant_id, w.period_start, w.period_end,
                   CASE WHEN date_trunc('hour', w.period_start, 'UTC') = w.period_start THEN w.period_start
                        ELSE date_trunc('hour', w.period_start, 'UTC') + interval '1 hour' END AS first_hour,
                   date_trunc('hour', w.period_end, 'UTC') AS last_hour
              FROM (\(wanted)) AS w
        """
            + (incompleteOnly
                ? """

                 CROSS JOIN LATERAL (SELECT 1 FROM tenants t WHERE t.id = w.tenant_id LIMIT 1) AS known
                  LEFT JOIN LATERAL (SELECT true AS done FROM usage_periods p
                                      WHERE p.tenant_id = w.tenant_id AND p.period_start = w.period_start AND p.period_end = w.period_end
                                      LIMIT 1) AS complete ON true
                 WHERE complete.done IS NULL
                """ : "") + "\n)"
    }

    /// Each period's whole hours come from the rollups; the rest of it — the edges,
    /// [start, min(first_hour, end)) and [max(last_hour, start), end) — from the events
    /// (pruned to the months of the period), as `UsageReader` reads a range. LATERAL, and
    /// two ranges without OR: index scans of the tenant's events per period (months pruned
    /// at run time), never a scan of the whole table. The second range starts where the
    /// first ends when the period is inside one hour. A period starting (ending) on an hour
    /// has no first (last) edge, and its scan is skipped before it starts: calendar months,
    /// and every period of a subscription started on the hour.
    static let piecesCTEs = """
        edges AS (
            SELECT w.tenant_id, w.period_start, w.period_end, e.metric, e.quantity, e.occurred_at, e.event_id, e.metadata
              FROM missing w
             CROSS JOIN LATERAL (
                SELECT e.metric, e.quantity, e.occurred_at, e.event_id, e.metadata FROM usage_events e
                 WHERE w.period_start < w.first_hour AND e.tenant_id = w.tenant_id
                   AND e.occurred_at >= w.period_start AND e.occurred_at < least(w.first_hour, w.period_end)
                   AND e.occurred_month BETWEEN date_trunc('month', w.period_start AT TIME ZONE 'UTC')::date
                                            AND date_trunc('month', least(w.first_hour, w.period_end) AT TIME ZONE 'UTC')::date
                UNION ALL
                SELECT e.metric, e.quantity, e.occurred_at, e.event_id, e.metadata FROM usage_events e
                 WHERE w.last_hour < w.period_end AND e.tenant_id = w.tenant_id
                   AND e.occurred_at >= greatest(w.last_hour, w.period_start, least(w.first_hour, w.period_end))
                   AND e.occurred_at < w.period_end
                   AND e.occurred_month BETWEEN date_trunc('month', greatest(w.last_hour, w.period_start) AT TIME ZONE 'UTC')::date
                                            AND date_trunc('month', w.period_end AT TIME ZONE 'UTC')::date
             ) AS e
        ), pieces AS (
            SELECT w.tenant_id, w.period_start, w.period_end, r.metric, r.s, r.c, r.mx, r.la, r.li, r.lq
              FROM missing w
             CROSS JOIN LATERAL (
                SELECT r.metric, r.quantity_sum AS s, r.event_count AS c, r.quantity_max AS mx, r.latest_at AS la,
                       r.latest_event_id AS li, r.latest_quantity AS lq
                  FROM usage_rollups r WHERE r.tenant_id = w.tenant_id AND r.hour >= w.first_hour AND r.hour < w.last_hour
             ) AS r
            UNION ALL
            SELECT tenant_id, period_start, period_end, metric, quantity, 1, quantity, occurred_at, event_id, quantity FROM edges
        )
        """

    /// The distinct values of unique_count metrics over each period (needs `missing` and `edges`).
    static let distinctValuesSelect = """
        SELECT DISTINCT tenant_id, period_start, period_end, metric, value FROM (
            SELECT w.tenant_id, w.period_start, w.period_end, v.metric, v.value
              FROM missing w
             CROSS JOIN LATERAL (
                SELECT v.metric, v.value FROM usage_rollup_values v
                 WHERE v.tenant_id = w.tenant_id AND v.hour >= w.first_hour AND v.hour < w.last_hour
             ) AS v
            UNION ALL
            SELECT e.tenant_id, e.period_start, e.period_end, e.metric, tally_unique_value(e.metadata ->> m.unique_field)
              FROM edges e JOIN billable_metrics m ON m.code = e.metric AND m.aggregation = 'unique_count'
             WHERE jsonb_typeof(e.metadata -> m.unique_field) IN ('string', 'number', 'boolean')
        ) AS v
        """

    /// The latest of `pieces`: the greatest (time, id bytewise, quantity).
    static func latest(_ column: String) -> String {
        "(array_agg(\(column) ORDER BY la DESC, li COLLATE \"C\" DESC, lq DESC))[1]"
    }

    /// The periods not complete in the statement's snapshot are claimed by inserting their
    /// `usage_periods` rows, in one order (two transactions claiming the same periods never
    /// wait on each other in a cycle); a row another transaction is inserting is waited
    /// for, and found there once it commits (not claimed). Only the claimed periods
    /// (`missing`) are completed, from the rollups and edge events in the snapshot: every
    /// batch storing events in them committed before it, or waits on the row.
    static let completeStatement = """
        WITH \(periodsCTE(incompleteOnly: true, named: "candidates")), marked AS (
            INSERT INTO usage_periods (tenant_id, period_start, period_end)
            SELECT tenant_id, period_start, period_end FROM candidates
             ORDER BY 1, 2, 3
            ON CONFLICT DO NOTHING
            RETURNING tenant_id, period_start, period_end
        ), missing AS (
            SELECT c.* FROM candidates c JOIN marked m USING (tenant_id, period_start, period_end)
        ), \(piecesCTEs), totals AS (
            INSERT INTO usage_period_totals (tenant_id, period_start, period_end, metric, quantity_sum, event_count, quantity_max,
                                             latest_at, latest_event_id, latest_quantity)
            SELECT tenant_id, period_start, period_end, metric, sum(s), sum(c), max(mx), \(latest("la")), \(latest("li")), \(latest("lq"))
              FROM pieces GROUP BY 1, 2, 3, 4
            RETURNING 1
        ), distinct_values AS (
            INSERT INTO usage_period_values (tenant_id, period_start, period_end, metric, value)
            \(distinctValuesSelect)
            RETURNING 1
        )
        SELECT DISTINCT w.tenant_id FROM (\(wanted)) AS w
         CROSS JOIN LATERAL (SELECT 1 FROM tenants t WHERE t.id = w.tenant_id LIMIT 1) AS known
        """

    /// The values of the periods asked for from the rollups and the edge events — the
    /// completion's reads, nothing written: sum, count, max, latest, distinct values.
    static let rollupStatement = """
        WITH \(periodsCTE(incompleteOnly: false)), \(piecesCTEs), uniques AS (
            SELECT tenant_id, period_start, period_end, metric, count(*) AS n FROM (\(distinctValuesSelect)) AS d GROUP BY 1, 2, 3, 4
        )
        SELECT a.tenant_id, a.period_start, a.period_end, a.metric, a.s, a.c, a.mx, a.lq, u.n::text
          FROM (
            SELECT tenant_id, period_start, period_end, metric, sum(s)::text AS s, sum(c)::text AS c, max(mx)::text AS mx,
                   \(latest("lq"))::text AS lq
              FROM pieces GROUP BY 1, 2, 3, 4
          ) AS a
          LEFT JOIN uniques u USING (tenant_id, period_start, period_end, metric)
        """

    /// One row per complete period without usage (metric NULL), else one per metric.
    /// Completeness and totals are probed per period by key (see `periodsCTE`; OFFSET 0
    /// keeps the planner from turning the totals' LATERAL into a join), never by hashing
    /// every period ever completed.
    static let readStatement = """
        SELECT w.tenant_id, w.period_start, w.period_end, t.metric, t.quantity_sum::text, t.event_count::text,
               t.quantity_max::text, t.latest_quantity::text
          FROM (\(wanted)) AS w
          LEFT JOIN LATERAL (
            SELECT t.metric, t.quantity_sum, t.event_count, t.quantity_max, t.latest_quantity FROM usage_period_totals t
             WHERE t.tenant_id = w.tenant_id AND t.period_start = w.period_start AND t.period_end = w.period_end
            OFFSET 0
          ) AS t ON true
         CROSS JOIN LATERAL (SELECT 1 FROM usage_periods p
                              WHERE p.tenant_id = w.tenant_id AND p.period_start = w.period_start AND p.period_end = w.period_end
                              LIMIT 1) AS complete
        """

    static let uniqueStatement = """
        SELECT w.tenant_id, w.period_start, w.period_end, v.metric, v.values
          FROM (\(wanted)) AS w
         CROSS JOIN LATERAL (
            SELECT v.metric, count(*)::bigint AS values FROM usage_period_values v
             WHERE v.tenant_id = w.tenant_id AND v.period_start = w.period_start AND v.period_end = w.period_end
             GROUP BY v.metric
         ) AS v
        """

    /// The `ON CONFLICT … DO UPDATE SET` of partial aggregates merged into the row `alias`
    /// (`usage_rollups` and `usage_period_totals` alike): sum and count add, max takes the
    /// greater, latest keeps the greatest (time, id bytewise, quantity).
    public static func mergeAggregates(into alias: String) -> String {
        let newer = """
            \(alias).latest_at IS NULL
                                   OR (EXCLUDED.latest_at, EXCLUDED.latest_event_id COLLATE "C", EXCLUDED.latest_quantity)
                                    > (\(alias).latest_at, \(alias).latest_event_id COLLATE "C", \(alias).latest_quantity)
            """
        return """
            quantity_sum = \(alias).quantity_sum + EXCLUDED.quantity_sum,
                            event_count = \(alias).event_count + EXCLUDED.event_count,
                            quantity_max = greatest(\(alias).quantity_max, EXCLUDED.quantity_max),
                            latest_at = CASE WHEN \(newer) THEN EXCLUDED.latest_at ELSE \(alias).latest_at END,
                            latest_event_id = CASE WHEN \(newer) THEN EXCLUDED.latest_event_id ELSE \(alias).latest_event_id END,
                            latest_quantity = CASE WHEN \(newer) THEN EXCLUDED.latest_quantity ELSE \(alias).latest_quantity END
            """
    }

    /// A period total as the statement that stored a batch left it: its row once the
    /// batch's events were added. The row is where the batches adding to it meet — the
    /// second waits for the first to commit and adds to what it committed — so the total
    /// counts every batch committed before this one, with no lock and no read.
    public struct StoredTotal: Sendable {
        public let period: TenantPeriod
        public let metric: String
        /// Events counted in the total: it grows with every batch adding to it.
        public let eventCount: Int64
        let sum: String
        let max: String?
        let latest: String?

        public init(period: TenantPeriod, metric: String, eventCount: Int64, sum: String, max: String?, latest: String?) {
            self.period = period
            self.metric = metric
            self.eventCount = eventCount
            self.sum = sum
            self.max = max
            self.latest = latest
        }

        /// The metric's value under `aggregation`; nil for unique_count, whose distinct
        /// values are rows of their own (`values(of:catalog:on:)` reads them).
        public func value(_ aggregation: Aggregation) throws -> Quantity? {
            switch aggregation {
            case .sum: try Quantity(parsingTotal: sum)
            case .count: Quantity(units: eventCount)
            case .max: try Quantity(parsingTotal: max ?? "0")
            case .latest: try Quantity(parsingTotal: latest ?? "0")
            case .uniqueCount: nil
            }
        }
    }

    /// For the statement that stores a batch's events: CTEs that add the events the CTE
    /// named `inserted` returned (tenant_id, event_id, metric, quantity, occurred_at,
    /// metadata), aggregated per hour by the CTE named `hourly` (tenant_id, metric, hour,
    /// s, c, mx, lo, hi and the latest event la, li, lq), to every complete period of their
    /// tenant containing them. Each latest is the first row of its group in one sort
    /// (DISTINCT ON, sums by window), not a sort per aggregate and group. The CTE named
    /// `period_totals` returns each total it wrote as it now stands (`StoredTotal`):
    /// tenant_id, period_start, period_end, metric, s, c, mx, lq.
    public static let addInsertedEvents = """
        inserted_groups AS (
            -- The batch's events per tenant and metric, with the time range they span.
            SELECT DISTINCT ON (tenant_id, metric)
                   tenant_id, metric, min(lo) OVER g AS lo, max(hi) OVER g AS hi, sum(s) OVER g AS s, sum(c) OVER g AS c,
                   max(mx) OVER g AS mx, la, li, lq
              FROM hourly
            WINDOW g AS (PARTITION BY tenant_id, metric)
             ORDER BY tenant_id, metric, la DESC, li COLLATE "C" DESC, lq DESC
        ), touched_periods AS (
            -- The complete periods each group's range meets (an index probe per tenant and
            -- metric, not per event), and whether the period holds the whole range.
            SELECT g.*, p.period_start, p.period_end, (p.period_start <= g.lo AND g.hi < p.period_end) AS whole
              FROM inserted_groups g
             CROSS JOIN LATERAL (
                SELECT p.period_start, p.period_end FROM usage_periods p
                 WHERE p.tenant_id = g.tenant_id AND p.period_start <= g.hi AND g.lo < p.period_end
             ) AS p
        ), contributions AS (
            -- A period holding the whole range takes the group's aggregate; one cut by the
            -- range (a period boundary among the batch's times) takes its events one by one.
            SELECT tenant_id, period_start, period_end, metric, s, c, mx, la, li, lq FROM touched_periods WHERE whole
            UNION ALL
            SELECT i.tenant_id, t.period_start, t.period_end, i.metric, i.quantity, 1, i.quantity, i.occurred_at, i.event_id, i.quantity
              FROM touched_periods t
              JOIN inserted i ON i.tenant_id = t.tenant_id AND i.metric = t.metric
                             AND t.period_start <= i.occurred_at AND i.occurred_at < t.period_end
             WHERE NOT t.whole
        ), period_contributions AS (
            SELECT DISTINCT ON (tenant_id, period_start, period_end, metric)
                   tenant_id, period_start, period_end, metric, sum(s) OVER p AS s, sum(c) OVER p AS c, max(mx) OVER p AS mx,
                   la, li, lq
              FROM contributions
            WINDOW p AS (PARTITION BY tenant_id, period_start, period_end, metric)
             ORDER BY tenant_id, period_start, period_end, metric, la DESC, li COLLATE "C" DESC, lq DESC
        ), period_totals AS (
            INSERT INTO usage_period_totals AS t (tenant_id, period_start, period_end, metric, quantity_sum, event_count,
                                                  quantity_max, latest_at, latest_event_id, latest_quantity)
            SELECT tenant_id, period_start, period_end, metric, s, c, mx, la, li, lq
              FROM period_contributions
             ORDER BY 1, 2, 3, 4
            ON CONFLICT (tenant_id, period_start, period_end, metric) DO UPDATE SET
                \(mergeAggregates(into: "t"))
            RETURNING t.tenant_id, t.period_start, t.period_end, t.metric, t.quantity_sum::text AS s, t.event_count AS c,
                      t.quantity_max::text AS mx, t.latest_quantity::text AS lq
        ), period_values AS (
            INSERT INTO usage_period_values (tenant_id, period_start, period_end, metric, value)
            SELECT DISTINCT i.tenant_id, p.period_start, p.period_end, i.metric, i.value
              FROM (
                -- Only events of unique_count metrics look for their periods.
                SELECT i.tenant_id, i.metric, i.occurred_at, tally_unique_value(i.metadata ->> m.unique_field) AS value
                  FROM inserted i JOIN billable_metrics m ON m.code = i.metric AND m.aggregation = 'unique_count'
                 WHERE jsonb_typeof(i.metadata -> m.unique_field) IN ('string', 'number', 'boolean')
              ) AS i
             CROSS JOIN LATERAL (
                SELECT p.period_start, p.period_end FROM usage_periods p
                 WHERE p.tenant_id = i.tenant_id AND p.period_start <= i.occurred_at AND i.occurred_at < p.period_end
             ) AS p
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        """
}
