import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import TallyMessaging
import TallyOutbox
import TallyStore

extension InvoiceGenerator {
    /// Issues (or finds) the invoices `commands` ask for, in the caller's transaction, with a
    /// fixed number of statements for the whole batch rather than per invoice: the
    /// subscriptions locked in one statement (in id order, so two Invoicers never wait on
    /// each other in a cycle), plans, subscriptions, catalog and existing invoices read once,
    /// the period values read from the period totals in one query, then every invoice's
    /// number allocated in one step per year — after all the reads, so the counter row is
    /// held only for the inserts — and the invoices, lines, run items, snapshots and
    /// `invoice.finalized` rows written with one insert each.
    ///
    /// Outcomes are in the order of `commands`. A command that cannot be carried out at all
    /// (its run or subscription does not exist) throws, and the caller's worker splits the
    /// batch to find it. Adjustment invoices (rare) take the one-at-a-time path after the
    /// period invoices; give each its own transaction (each takes a counter row before its
    /// reads, and two counter rows taken in different orders could deadlock).
    public static func generate(
        _ commands: [InvoiceGenerateCommand], paymentTermsDays: Int = defaultPaymentTermsDays, on connection: isolated PostgresConnection
    ) throws -> [Outcome] {
        guard !commands.isEmpty else { return [] }
        let runs = try BillingRunRecords.asOf(of: Set(commands.map(\.billingRunID)), on: connection)
        var terms: [UUID: TenantTerms] = [:]  // by subscription
        for locked in try InvoiceRecords.lockSubscriptions(Set(commands.map(\.subscriptionID)), on: connection) {
            terms[locked.subscription] = TenantTerms(
                id: locked.tenant, taxBasisPoints: locked.taxRateBps, currency: locked.currency, paymentProvider: locked.paymentProvider,
                paymentTermsDays: paymentTermsDays)
        }
        for command in commands {
            guard runs[command.billingRunID] != nil else { throw InvoicingError("billing run \(command.billingRunID) does not exist") }
            guard terms[command.subscriptionID] != nil else { throw InvoicingError("subscription \(command.subscriptionID) does not exist") }
        }
        let plans = try SubscriptionRecords.plans(on: connection)
        let tenants = Array(Set(terms.values.map(\.id)))
        var subscriptions: [UUID: StoredSubscription] = [:]
        for stored in try SubscriptionRecords.subscriptions(of: tenants, plans: plans, on: connection).values.joined() {
            subscriptions[stored.id] = stored
        }
        let catalog = try MetricCatalogRecords.load(on: connection)
        var invoiced: [String: UUID] = [:]  // "subscription|period start" of period invoices
        for invoice in try InvoiceRecords.periodInvoices(of: Array(terms.keys), on: connection) {
            invoiced["\(invoice.subscription)|\(Instant(invoice.periodStart).microsecondsSinceEpoch)"] = invoice.id
        }

        var outcomes = [Outcome?](repeating: nil, count: commands.count)
        var marks: [RunItemMark] = []
        // The periods to bill, and their values from the period totals in one read.
        var periodCommands: [(index: Int, stored: StoredSubscription, period: BillingPeriod)] = []
        var firstInBatch: [String: Int] = [:]
        var adjustments: [(index: Int, stored: StoredSubscription, tenant: TenantTerms, asOf: Date)] = []
        var repeats: [(index: Int, first: Int)] = []
        for (index, command) in commands.enumerated() {
            guard let stored = subscriptions[command.subscriptionID], let tenant = terms[command.subscriptionID],
                let asOf = runs[command.billingRunID]
            else { throw InvoicingError("subscription \(command.subscriptionID) has no plan") }
            if command.isAdjustment {
                adjustments.append((index, stored, tenant, asOf))
                continue
            }
            guard let period = stored.timeline.billingPeriod(command.periodIndex) else {
                let reason = "the subscription has no period \(command.periodIndex) any more (it ended before it)"
                marks.append(RunItemMark(command: command, invoice: nil, status: "skipped", error: reason))
                outcomes[index] = .skipped(reason: reason)
                continue
            }
            let key = "\(command.subscriptionID)|\(period.billed.start.microsecondsSinceEpoch)"
            if let existing = invoiced[key] {
                marks.append(RunItemMark(command: command, invoice: existing, status: "issued", error: nil))
                outcomes[index] = .alreadyIssued(invoiceID: existing)
                continue
            }
            // The same period twice in one batch (two runs, or a redelivery): billed once,
            // the second told what became of the first.
            if let first = firstInBatch[key] {
                repeats.append((index, first))
                continue
            }
            firstInBatch[key] = index
            periodCommands.append((index, stored, period))
        }
        let periods = Set(periodCommands.map { TenantPeriod(tenant: $0.stored.tenantID, span: $0.period.billed) })
        let totals = try UsagePeriodTotals.exactValues(of: periods, catalog: catalog, on: connection)

        // Late usage of an earlier period is billed once, on the first (in period order) of
        // the subscription's invoices in the batch that starts after it — where issuing them
        // one at a time would put it.
        var latest: [UUID: Instant] = [:]
        for (_, stored, period) in periodCommands {
            latest[stored.id] = max(latest[stored.id] ?? period.billed.start, period.billed.start)
        }
        let lateUsages = try lateUsage(of: periodCommands.map { ($0.stored, latest[$0.stored.id]) }, catalog: catalog, on: connection)
        var lateFor: [Int: [LateUsage]] = [:]  // by command index
        for (subscription, lates) in lateUsages {
            let own = periodCommands.filter { $0.stored.id == subscription }.sorted { $0.period.billed.start < $1.period.billed.start }
            for late in lates {
                guard let first = own.first(where: { $0.period.billed.start > late.period.start }) else { continue }
                lateFor[first.index, default: []].append(late)
            }
        }
        var drafts: [Draft] = []
        for (index, stored, period) in periodCommands {
            let command = commands[index]
            guard let tenant = terms[command.subscriptionID], let asOf = runs[command.billingRunID] else { continue }
            let values = totals[TenantPeriod(tenant: stored.tenantID, span: period.billed)] ?? [:]
            let late = lateFor[index] ?? []
            let computed = Result { () throws(BillingError) in
                try InvoiceCalculator.invoice(
                    for: period, of: stored.timeline, values: values, lateUsage: late, taxBasisPoints: tenant.taxBasisPoints)
            }
            switch computed {
            case .success(let draft):
                let pricing = stored.timeline.pricingPlan(of: period)
                var snapshots = try pricing.terms.filter { $0.value.charge != nil }.map(\.key).sorted().map { metric in
                    let value = values[metric] ?? .zero
                    return Snapshot(period: period.billed, metric: metric, value: value, amount: try pricing.charge(metric: metric, value: value))
                }
                for adjustment in late {
                    snapshots.append(
                        Snapshot(
                            period: adjustment.period, metric: adjustment.metric, value: adjustment.currentValue,
                            amount: try adjustment.plan.charge(metric: adjustment.metric, value: adjustment.currentValue)))
                }
                drafts.append(
                    Draft(
                        index: index, command: command, draft: draft, tenant: tenant, asOf: asOf,
                        planSlugs: draft.lines.map { _ in pricing.slug }, snapshots: snapshots))
            case .failure(let error):
                marks.append(RunItemMark(command: command, invoice: nil, status: "failed", error: error.description))
                outcomes[index] = .failed(reason: error.description)
            }
        }
        for issued in try issue(drafts, on: connection) {
            marks.append(RunItemMark(command: commands[issued.index], invoice: issued.invoiceID, status: "issued", error: nil))
            outcomes[issued.index] = .issued(invoiceID: issued.invoiceID, number: issued.number)
        }
        // Adjustment invoices take their numbers as they go: last, after every read of the
        // batch (the Invoicer gives each its own transaction).
        for (index, stored, tenant, asOf) in adjustments {
            outcomes[index] = try generateAdjustment(commands[index], of: stored, tenant: tenant, asOf: asOf, on: connection)
        }
        for (index, first) in repeats {
            switch outcomes[first] {
            case .issued(let invoice, _), .alreadyIssued(let invoice):
                marks.append(RunItemMark(command: commands[index], invoice: invoice, status: "issued", error: nil))
                outcomes[index] = .alreadyIssued(invoiceID: invoice)
            case .skipped(let reason):
                marks.append(RunItemMark(command: commands[index], invoice: nil, status: "skipped", error: reason))
                outcomes[index] = .skipped(reason: reason)
            case .failed(let reason):
                marks.append(RunItemMark(command: commands[index], invoice: nil, status: "failed", error: reason))
                outcomes[index] = .failed(reason: reason)
            case nil: break
            }
        }
        try mark(marks, on: connection)
        return try outcomes.map { outcome in
            guard let outcome else { throw InvoicingError("a command of the batch was left without an outcome") }
            return outcome
        }
    }

    /// An invoice computed and ready to be numbered and written.
    struct Draft {
        let index: Int
        let command: InvoiceGenerateCommand
        let draft: InvoiceDraft
        let tenant: TenantTerms
        let asOf: Date
        let planSlugs: [String?]
        /// What it bills per metric with a quota (and the late usage it adjusts): later
        /// adjustments compare against these.
        let snapshots: [Snapshot]
    }

    struct Snapshot {
        let period: Period
        let metric: String
        let value: Quantity
        let amount: Cents
    }

    struct RunItemMark {
        let command: InvoiceGenerateCommand
        let invoice: UUID?
        let status: String
        let error: String?
    }

    /// Numbers the drafts (gapless, in batch order, per year of their run's as-of) and
    /// writes them: invoices, lines, snapshots and `invoice.finalized` outbox rows.
    private static func issue(_ drafts: [Draft], on connection: isolated PostgresConnection) throws -> [(index: Int, invoiceID: UUID, number: String)]
    {
        guard !drafts.isEmpty else { return [] }
        // Numbers last: the counter rows are held from here to the commit, a few inserts later.
        var numbers: [String] = Array(repeating: "", count: drafts.count)
        let byYear = Dictionary(grouping: drafts.indices) { Calendar.utc.component(.year, from: drafts[$0].asOf) }
        for (year, positions) in byYear.sorted(by: { $0.key < $1.key }) {
            let last = try InvoiceNumbers.take(positions.count, year: year, on: connection)
            for (offset, position) in positions.enumerated() {
                numbers[position] = invoiceNumber(year: year, last - positions.count + 1 + offset)
            }
        }
        let ids = drafts.map { _ in UUID() }
        let dates = try InvoiceRecords.insertPeriodInvoices(
            drafts.indices.map { position in
                let draft = drafts[position]
                return InvoiceRecords.NewInvoice(
                    id: ids[position], tenant: draft.tenant.id, subscription: draft.command.subscriptionID, billingRun: draft.command.billingRunID,
                    number: numbers[position], currency: draft.tenant.currency, periodStart: draft.draft.period.start.date,
                    periodEnd: draft.draft.period.end.date, subtotalCents: draft.draft.subtotal.value, taxRateBps: draft.draft.taxBasisPoints,
                    taxCents: draft.draft.tax.value, totalCents: draft.draft.total.value, asOf: draft.asOf,
                    paymentProvider: draft.tenant.paymentProvider,
                    paymentTermsDays: draft.tenant.paymentTermsDays)
            }, issuedAt: TallyClock.now(), on: connection)

        var lines: [InvoiceRecords.NewLine] = []
        var snapshots: [BilledUsage.Snapshot] = []
        for (position, draft) in drafts.enumerated() {
            for (index, line) in draft.draft.lines.enumerated() {
                lines.append(InvoiceRecords.NewLine(invoice: ids[position], position: index + 1, line: line, planSlug: draft.planSlugs[index]))
            }
            for snapshot in draft.snapshots {
                snapshots.append(
                    BilledUsage.Snapshot(
                        subscription: draft.command.subscriptionID, periodStart: snapshot.period.start.date, metric: snapshot.metric,
                        invoice: ids[position], value: snapshot.value, amount: snapshot.amount))
            }
        }
        try InvoiceRecords.insertLines(lines, on: connection)
        try BilledUsage.insert(snapshots, billedAt: TallyClock.now(), on: connection)
        var events: [BillingEvent] = []
        for (position, draft) in drafts.enumerated() {
            guard let issued = dates[ids[position]] else { throw InvoicingError("invoice \(numbers[position]) was not inserted") }
            let invoice = draft.draft
            events.append(
                .invoiceFinalized(
                    .init(
                        tenantID: draft.tenant.id, occurredAt: issued.issued, invoiceID: ids[position], number: numbers[position],
                        kind: "period", currency: draft.tenant.currency, periodStart: invoice.period.start.date,
                        periodEnd: invoice.period.end.date, subtotalCents: invoice.subtotal.value, taxCents: invoice.tax.value,
                        totalCents: invoice.total.value, dueAt: issued.due)))
        }
        try Outbox.enqueue(events, on: connection)
        return drafts.indices.map { (drafts[$0].index, ids[$0], numbers[$0]) }
    }

    /// Marks the run items of the batch (issued with their invoice, skipped or failed with why).
    private static func mark(_ marks: [RunItemMark], on connection: isolated PostgresConnection) throws {
        try BillingRunRecords.mark(
            marks.map {
                BillingRunRecords.ItemMark(
                    run: $0.command.billingRunID, subscription: $0.command.subscriptionID, periodIndex: $0.command.periodIndex,
                    invoice: $0.invoice, status: $0.status, error: $0.error)
            }, on: connection)
    }
}
