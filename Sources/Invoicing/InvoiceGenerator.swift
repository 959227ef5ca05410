import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import TallyMessaging
import TallyRuntime
import TallyStore
import UsageEvents

/// Issues the invoice of one subscription period, exactly once, in one transaction:
/// the subscription row is locked (two Invoicers on the same period take turns; the
/// second finds the invoice and returns it), the invoice is computed with the billing
/// engine from the aggregated usage — plus adjustment lines for earlier periods whose
/// usage changed since they were billed — then inserted with its lines, the per-metric
/// snapshot later adjustments compare against, the next gapless `INV-YYYY-NNNNNN` of
/// the run's year (allocated after the reads, so the counter row is held briefly) and
/// an `invoice.finalized` outbox row. An invoice is due `paymentTermsDays` after it is
/// issued.
public enum InvoiceGenerator {
    /// Days from issue to due date when nothing else is configured (net 30).
    public static let defaultPaymentTermsDays = 30

    public enum Outcome: Sendable, Equatable {
        case issued(invoiceID: UUID, number: String)
        case alreadyIssued(invoiceID: UUID)
        /// The period no longer exists (canceled after the run was planned): nothing to bill.
        case skipped(reason: String)
        /// The invoice cannot be computed (an amount beyond 64-bit cents): the run item
        /// is marked failed with the reason, and the rest of the run goes on.
        case failed(reason: String)
    }

    /// Issues (or finds) the invoice `command` asks for; it is due `paymentTermsDays` after issue.
    public static func generate(
        _ command: InvoiceGenerateCommand, paymentTermsDays: Int = defaultPaymentTermsDays, on connection: isolated PostgresConnection
    ) throws -> Outcome {
        guard let outcome = try generate([command], paymentTermsDays: paymentTermsDays, on: connection).first else {
            throw InvoicingError("no outcome for the command of subscription \(command.subscriptionID)")
        }
        return outcome
    }

    /// What the invoice needs of its tenant.
    struct TenantTerms {
        let id: UUID
        let taxBasisPoints: Int
        let currency: String
        let paymentProvider: String
        let paymentTermsDays: Int
    }

    /// An invoice of adjustments only, for late usage of a subscription that has ended
    /// (SPEC §2 step 3). Exactly once per run item; and as the snapshots it writes make
    /// the late usage billed, a second run finds nothing left and skips.
    static func generateAdjustment(
        _ command: InvoiceGenerateCommand, of stored: StoredSubscription, tenant: TenantTerms, asOf: Date,
        on connection: isolated PostgresConnection
    ) throws -> Outcome {
        if let existing = try connection.query(
            """
            SELECT invoice_id FROM billing_run_items
             WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3 AND invoice_id IS NOT NULL
            """, [command.billingRunID, command.subscriptionID, command.periodIndex]
        ).first {
            return .alreadyIssued(invoiceID: try existing.decode(0, as: UUID.self))
        }
        let catalog = try MetricCatalogRecords.load(on: connection)
        let late = try lateUsage(stored, before: nil, tenant: tenant.id, catalog: catalog, on: connection)
        let adjustments: [InvoiceLine]
        switch Result(catching: { () throws(BillingError) in try InvoiceCalculator.adjustmentLines(late) }) {
        case .success(let lines): adjustments = lines
        case .failure(let error): return try fail(command, error, on: connection)
        }
        guard let first = late.map(\.period.start).min(), let last = late.map(\.period.end).max(), !adjustments.isEmpty else {
            let reason = "no late usage left to bill (already billed, or it does not change any charge)"
            try markItem(command, status: "skipped", error: reason, on: connection)
            return .skipped(reason: reason)
        }
        let computed = Result { () throws(BillingError) in
            try InvoiceCalculator.adjustmentInvoice(
                period: Period(start: first, end: last), lateUsage: late, taxBasisPoints: tenant.taxBasisPoints)
        }
        let draft: InvoiceDraft
        switch computed {
        case .success(let computed): draft = computed
        case .failure(let error): return try fail(command, error, on: connection)
        }
        var slugs: [String: String] = [:]
        for usage in late { slugs["\(usage.period.start)|\(usage.metric)"] = usage.plan.slug }
        let issued = try issue(
            draft, kind: "adjustment", command: command, tenant: tenant, asOf: asOf,
            planSlugs: draft.lines.map { slugs["\($0.period.start)|\($0.metric ?? "")"] }, on: connection)
        try snapshotLateUsage(late, subscription: command.subscriptionID, invoice: issued.invoiceID, on: connection)
        return .issued(invoiceID: issued.invoiceID, number: issued.number)
    }

    /// Inserts the invoice and its lines with the next number, marks the run item and
    /// writes `invoice.finalized` to the outbox.
    private static func issue(
        _ draft: InvoiceDraft, kind: String, command: InvoiceGenerateCommand, tenant: TenantTerms, asOf: Date, planSlugs: [String?],
        on connection: isolated PostgresConnection
    ) throws -> (invoiceID: UUID, number: String) {
        // The number is allocated once everything else is computed: the counter row is
        // held from here to the commit, a few inserts later.
        let number = try allocateNumber(year: Calendar.utc.component(.year, from: asOf), on: connection)
        let invoiceID = UUID()
        let issued = try connection.query(
            """
            INSERT INTO invoices (id, tenant_id, subscription_id, billing_run_id, kind, number, currency, period_start, period_end,
                                  subtotal_cents, tax_rate_bps, tax_cents, total_cents, issued_at, due_at, as_of, stripe_status,
                                  stripe_next_attempt_at)
            VALUES ($1, $2, $3, $4, $15, $13, $5, $6, $7, $8, $9, $10, $11, $17, $17::timestamptz + make_interval(days => $16::integer), $12,
                    CASE WHEN $14 = 'stripe' THEN 'pending' END, CASE WHEN $14 = 'stripe' THEN now() END)
            RETURNING issued_at, due_at
            """,
            [
                invoiceID, tenant.id, command.subscriptionID, command.billingRunID, tenant.currency, draft.period.start.date,
                draft.period.end.date, draft.subtotal.value, draft.taxBasisPoints, draft.tax.value, draft.total.value, asOf, number,
                tenant.paymentProvider, kind, tenant.paymentTermsDays, TallyClock.now(),
            ])[0]
        for (position, line) in draft.lines.enumerated() {
            try connection.query(
                """
                INSERT INTO invoice_lines (invoice_id, position, kind, metric, description, quantity, unit_price_cents, amount_cents,
                                           plan_slug, period_start, period_end)
                VALUES ($1, $2, $3, $4, $5, $6::numeric, $7::numeric, $8, $9, $10, $11)
                """,
                [
                    invoiceID, position + 1, line.kind.rawValue, line.metric, line.description, line.quantity.description,
                    line.unitPrice.description, line.amount.value, planSlugs[position], line.period.start.date, line.period.end.date,
                ])
        }
        try markItem(command, invoice: invoiceID, on: connection)
        try Outbox.enqueue(
            .invoiceFinalized(
                .init(
                    tenantID: tenant.id, occurredAt: try issued.decode(0, as: Date.self), invoiceID: invoiceID, number: number, kind: kind,
                    currency: tenant.currency,
                    periodStart: draft.period.start.date, periodEnd: draft.period.end.date, subtotalCents: draft.subtotal.value,
                    taxCents: draft.tax.value, totalCents: draft.total.value, dueAt: try issued.decode(1, as: Date.self))),
            on: connection)
        return (invoiceID, number)
    }

    private static func snapshotLateUsage(
        _ late: [LateUsage], subscription: UUID, invoice: UUID, on connection: isolated PostgresConnection
    ) throws {
        for adjustment in late {
            try snapshot(
                subscription: subscription, invoice: invoice, period: adjustment.period, plan: adjustment.plan,
                values: [adjustment.metric: adjustment.currentValue], metrics: [adjustment.metric], on: connection)
        }
    }

    /// Of `subscriptions` (each with its number of periods, all invoiced), those whose
    /// usage may have changed since it was billed — a superset of those with late usage,
    /// found in one statement that returns only them: a billing run checks every
    /// subscription that ended in the last 100 days (hundreds of thousands), and reading
    /// each one's snapshots and totals into Swift was most of its planning.
    ///
    /// A period is left out only when what was last billed per metric still equals its
    /// complete totals (same span), or when it was billed zero and has no usage at all (no
    /// rollup row in its hours: every stored event is in its hour's rollup); unique_count
    /// metrics, and periods without complete totals but with usage, are always kept.
    /// `lateUsage` then decides exactly on what is left.
    static func lateUsageCandidates(
        _ subscriptions: [(stored: StoredSubscription, periods: Int64)], catalog: MetricCatalog,
        on connection: isolated PostgresConnection
    ) throws -> Set<UUID> {
        var ids: [String] = []
        var tenants: [String] = []
        var starts: [String] = []
        var ends: [String] = []
        for (stored, count) in subscriptions {
            for index in 0..<count {
                guard let period = stored.timeline.billingPeriod(index) else { break }
                ids.append(stored.id.lowercasedText)
                tenants.append(stored.tenantID.lowercasedText)
                starts.append(PostgresTimestamp(microsecondsSinceEpoch: period.billed.start.microsecondsSinceEpoch).description)
                ends.append(PostgresTimestamp(microsecondsSinceEpoch: period.billed.end.microsecondsSinceEpoch).description)
            }
        }
        guard !ids.isEmpty else { return [] }
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
                PostgresTextArray(ids), PostgresTextArray(tenants), PostgresTextArray(starts), PostgresTextArray(ends),
                PostgresTextArray(aggregations.map(\.key)), PostgresTextArray(names),
            ])
        return Set(try rows.map { try $0.decode(0, as: UUID.self) })
    }

    /// Invoiced periods starting before `limit` (nil: all) whose metric values differ from
    /// what was last billed.
    static func lateUsage(
        _ stored: StoredSubscription, before limit: Instant?, tenant: UUID, catalog: MetricCatalog,
        on connection: isolated PostgresConnection
    ) throws -> [LateUsage] {
        try lateUsage(of: [(stored, limit)], catalog: catalog, on: connection)[stored.id] ?? []
    }

    /// `lateUsage` of many subscriptions in three statements whatever their number: their
    /// snapshots in one read, the current values of the periods to check from the period
    /// totals (or, without them, from the rollups) in two reads.
    static func lateUsage(
        of subscriptions: [(stored: StoredSubscription, before: Instant?)], catalog: MetricCatalog,
        on connection: isolated PostgresConnection
    ) throws -> [UUID: [LateUsage]] {
        guard !subscriptions.isEmpty else { return [:] }
        let rows = try connection.query(
            """
            SELECT DISTINCT ON (subscription_id, period_start, metric) subscription_id, period_start, metric, value::text, billed_at
              FROM billed_usage WHERE subscription_id = ANY($1::uuid[])
             ORDER BY subscription_id, period_start, metric, billed_at DESC
            """, [PostgresTextArray(subscriptions.map(\.stored.id.lowercasedText))])
        let limits = Dictionary(subscriptions.map { ($0.stored.id, $0.before) }, uniquingKeysWith: { first, _ in first })
        var billedBy: [UUID: [Instant: [(String, Quantity)]]] = [:]
        var lastBilled: [UUID: [Instant: Date]] = [:]
        for row in rows {
            let subscription = try row.decode(0, as: UUID.self)
            let start = Instant(try row.decode(1, as: Date.self))
            if let limit = limits[subscription] ?? nil, start >= limit { continue }
            billedBy[subscription, default: [:]][start, default: []].append((try row.decode(2), try Quantity(parsingTotal: row.text(3) ?? "0")))
            let billedAt = try row.decode(4, as: Date.self)
            lastBilled[subscription, default: [:]][start] = min(lastBilled[subscription]?[start] ?? billedAt, billedAt)
        }
        // The periods whose values may still change.
        var checks: [(stored: StoredSubscription, period: BillingPeriod, billed: [(String, Quantity)])] = []
        for (stored, _) in subscriptions {
            for (start, billed) in (billedBy[stored.id] ?? [:]).sorted(by: { $0.key < $1.key }) {
                guard let earlier = stored.timeline.billingPeriod(stored.timeline.calendar.index(containing: start)) else { continue }
                // Incremental: no event older than 90 days is counted (SPEC §3), so a period
                // whose every value was snapshot more than 90 days (and a day of margin for a
                // batch in flight) after its end can never change again: it is not read again.
                // Snapshots are stamped with Tally's clock, the one event ages are judged by.
                let settled = earlier.billed.end.date.addingTimeInterval(UsageEventValidator.maxAge + 86_400)
                if let snapshot = lastBilled[stored.id]?[start], snapshot > settled { continue }
                checks.append((stored, earlier, billed))
            }
        }
        let totals = try UsagePeriodTotals.exactValues(
            of: Set(checks.map { TenantPeriod(tenant: $0.stored.tenantID, span: $0.period.billed) }), catalog: catalog, on: connection)
        var late: [UUID: [LateUsage]] = [:]
        for (stored, earlier, billed) in checks {
            let current = totals[TenantPeriod(tenant: stored.tenantID, span: earlier.billed)] ?? [:]
            let plan = stored.timeline.pricingPlan(of: earlier)
            for (metric, value) in billed where (current[metric] ?? .zero) != value {
                late[stored.id, default: []].append(
                    LateUsage(period: earlier.billed, metric: metric, billedValue: value, currentValue: current[metric] ?? .zero, plan: plan))
            }
        }
        return late
    }

    /// What this invoice billed per metric of the pricing plan that has a quota: late
    /// usage is charge(new value) − charge(this value).
    private static func snapshot(
        subscription: UUID, invoice: UUID, period: Period, plan: Plan, values: [String: Quantity], metrics: [String],
        on connection: isolated PostgresConnection
    ) throws {
        for metric in metrics.sorted() {
            let value = values[metric] ?? .zero
            try connection.query(
                """
                INSERT INTO billed_usage (subscription_id, period_start, metric, invoice_id, value, amount_cents, billed_at)
                VALUES ($1, $2, $3, $4, $5::numeric, $6, $7)
                """,
                [
                    subscription, period.start.date, metric, invoice, value.description, try plan.charge(metric: metric, value: value).value,
                    TallyClock.now(),
                ])
        }
    }

    /// Marks the run item failed with why the invoice cannot be computed.
    private static func fail(
        _ command: InvoiceGenerateCommand, _ error: BillingError, on connection: isolated PostgresConnection
    ) throws -> Outcome {
        let reason = error.description
        try markItem(command, status: "failed", error: reason, on: connection)
        return .failed(reason: reason)
    }

    private static func markItem(
        _ command: InvoiceGenerateCommand, invoice: UUID? = nil, status: String = "issued", error: String? = nil,
        on connection: isolated PostgresConnection
    ) throws {
        try connection.query(
            """
            UPDATE billing_run_items SET status = $5, invoice_id = $4, error = $6, updated_at = now()
             WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3
            """, [command.billingRunID, command.subscriptionID, command.periodIndex, invoice, status, error])
    }

    /// The next number of `year`, gapless: the counter moves in this transaction, so a
    /// rollback gives the number back.
    private static func allocateNumber(year: Int, on connection: isolated PostgresConnection) throws -> String {
        let next = try connection.query(
            """
            INSERT INTO invoice_number_counters (year, last_number) VALUES ($1, 1)
            ON CONFLICT (year) DO UPDATE SET last_number = invoice_number_counters.last_number + 1
            RETURNING last_number
            """, [year])[0].decode(0, as: Int.self)
        return invoiceNumber(year: year, next)
    }

    /// `INV-YYYY-NNNNNN`.
    static func invoiceNumber(year: Int, _ number: Int) -> String {
        let digits = String(number)
        return "INV-\(year)-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }
}

/// A command that cannot be carried out as given.
public struct InvoicingError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension Calendar {
    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()
}
