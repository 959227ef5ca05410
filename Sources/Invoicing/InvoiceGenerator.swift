import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import TallyMessaging
import TallyOutbox
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
    public static let defaultPaymentTermsDays = InvoiceView.defaultPaymentTermsDays

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
        if let existing = try BillingRunRecords.issuedInvoice(
            run: command.billingRunID, subscription: command.subscriptionID, periodIndex: command.periodIndex, on: connection)
        {
            return .alreadyIssued(invoiceID: existing)
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
        let issued = try InvoiceRecords.insert(
            InvoiceRecords.NewInvoice(
                id: invoiceID, tenant: tenant.id, subscription: command.subscriptionID, billingRun: command.billingRunID, number: number,
                currency: tenant.currency, periodStart: draft.period.start.date, periodEnd: draft.period.end.date,
                subtotalCents: draft.subtotal.value, taxRateBps: draft.taxBasisPoints, taxCents: draft.tax.value, totalCents: draft.total.value,
                asOf: asOf, paymentProvider: tenant.paymentProvider, paymentTermsDays: tenant.paymentTermsDays),
            kind: kind, issuedAt: TallyClock.now(), on: connection)
        for (position, line) in draft.lines.enumerated() {
            try InvoiceRecords.insertLine(
                InvoiceRecords.NewLine(invoice: invoiceID, position: position + 1, line: line, planSlug: planSlugs[position]), on: connection)
        }
        try markItem(command, invoice: invoiceID, on: connection)
        try Outbox.enqueue(
            .invoiceFinalized(
                .init(
                    tenantID: tenant.id, occurredAt: issued.issued, invoiceID: invoiceID, number: number, kind: kind,
                    currency: tenant.currency,
                    periodStart: draft.period.start.date, periodEnd: draft.period.end.date, subtotalCents: draft.subtotal.value,
                    taxCents: draft.tax.value, totalCents: draft.total.value, dueAt: issued.due)),
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
        var periods: [BilledUsage.CheckedPeriod] = []
        for (stored, count) in subscriptions {
            for index in 0..<count {
                guard let period = stored.timeline.billingPeriod(index) else { break }
                periods.append(BilledUsage.CheckedPeriod(subscription: stored.id, tenant: stored.tenantID, period: period.billed))
            }
        }
        return try BilledUsage.possiblyChanged(periods, catalog: catalog, on: connection)
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
        let rows = try BilledUsage.latest(of: subscriptions.map(\.stored.id), on: connection)
        let limits = Dictionary(subscriptions.map { ($0.stored.id, $0.before) }, uniquingKeysWith: { first, _ in first })
        var billedBy: [UUID: [Instant: [(String, Quantity)]]] = [:]
        var lastBilled: [UUID: [Instant: Date]] = [:]
        for row in rows {
            let subscription = row.subscription
            let start = Instant(row.periodStart)
            if let limit = limits[subscription] ?? nil, start >= limit { continue }
            billedBy[subscription, default: [:]][start, default: []].append((row.metric, try Quantity(parsingTotal: row.value ?? "0")))
            let billedAt = row.billedAt
            lastBilled[subscription, default: [:]][start] = min(lastBilled[subscription]?[start] ?? billedAt, billedAt)
        }
        // The periods whose values may still change.
        var checks: [(stored: StoredSubscription, period: BillingPeriod, billed: [(String, Quantity)])] = []
        for (stored, _) in subscriptions {
            for (start, billed) in (billedBy[stored.id] ?? [:]).sorted(by: { $0.key < $1.key }) {
                guard let earlier = stored.timeline.billingPeriod(stored.timeline.calendar.index(containing: start)) else { continue }
                // Incremental: no event older than 97 days is counted (90 days from its
                // acceptance, SPEC §3, counted within 7 days of it), so a period whose every
                // value was snapshot more than 97 days (and a day of margin for a batch in
                // flight) after its end can never change again: it is not read again.
                // Snapshots are stamped with Tally's clock, the one event ages are judged by.
                let settled = earlier.billed.end.date.addingTimeInterval(
                    UsageEventValidator.maxAge + UsageEventValidator.workerMargin + 86_400)
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
            try BilledUsage.insert(
                BilledUsage.Snapshot(
                    subscription: subscription, periodStart: period.start.date, metric: metric, invoice: invoice, value: value,
                    amount: try plan.charge(metric: metric, value: value)),
                billedAt: TallyClock.now(), on: connection)
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
        try BillingRunRecords.mark(
            BillingRunRecords.ItemMark(
                run: command.billingRunID, subscription: command.subscriptionID, periodIndex: command.periodIndex, invoice: invoice,
                status: status, error: error), on: connection)
    }

    /// The next number of `year`, gapless: the counter moves in this transaction, so a
    /// rollback gives the number back.
    private static func allocateNumber(year: Int, on connection: isolated PostgresConnection) throws -> String {
        let next = try InvoiceNumbers.next(year: year, on: connection)
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
