import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import TallyStore

/// A tenant's usage against its plan in the period that contains an instant: each
/// metric's value counted so far, its quota, percent and enforcement, what it adds to the
/// bill so far, the base fee so far, and the previous period's values to compare with.
/// Computed once here, by the billing engine over the period aggregates, for
/// `GET /v1/usage` (current period), `GET /v1/invoices/upcoming` and the dashboard.
public struct UsageStatement: Sendable {
    /// What kind of period the statement covers.
    public enum PeriodKind: String, Sendable, Hashable {
        /// A billing period of a subscription.
        case billing
        /// A subscription's trial: recorded, never billed.
        case trial
        /// No subscription covers the instant: the part of its UTC calendar month around it
        /// that none covers (after the last one ended, before the next starts), usage unbilled.
        case calendarMonth = "calendar_month"
    }

    public let tenantID: UUID
    public let currency: String
    public let taxRateBps: Int
    /// The subscription whose period (or trial) contains the instant, if any.
    public let subscription: StoredSubscription?
    /// The plan priced for the period (the one in force at its end); nil without a subscription.
    public let plan: Plan?
    public let kind: PeriodKind
    /// The whole period.
    public let period: Period
    /// What is counted: `[period.start, min(asOf, period.end))`.
    public let counted: Period
    public let metrics: [MetricStanding]
    /// Each metric's value over the previous period of the same kind, up to the same point
    /// in it as `counted` has reached in this one (`samePoint`); nil when there is none.
    public let previous: [String: Quantity]?
    /// The invoice the open billing period would produce now; nil outside a billing period.
    public let draft: InvoiceDraft?
    /// The billing period of `draft`.
    public let billingPeriod: BillingPeriod?
    /// The subscription's next invoice as it stands: the open period's (`draft`), or — when
    /// that period was invoiced early, by an admin run with a later `as_of` — the next
    /// period's, which carries what arrives for the early one as adjustments; nil outside
    /// a billing period, or when the early invoice was the subscription's last.
    public let upcoming: (period: BillingPeriod, plan: Plan, draft: InvoiceDraft)?

    /// The base fee lines of the open period so far (proration included).
    public var baseSoFar: Cents {
        draft?.lines.filter { $0.kind == .base }.reduce(Cents.zero) { $0 + $1.amount } ?? .zero
    }

    /// The statement of `tenant` at `asOf`, or nil when the tenant does not exist.
    public static func load(tenant: UUID, asOf: Instant, on connection: isolated PostgresConnection) throws -> UsageStatement? {
        guard let terms = try StatementReads.terms(of: tenant, on: connection) else { return nil }
        let taxRate = terms.taxRateBps
        let currency = terms.currency
        let plans = try SubscriptionRecords.plans(on: connection)
        let subscriptions = try SubscriptionRecords.subscriptions(of: [tenant], plans: plans, on: connection)[tenant] ?? []
        let catalog = try MetricCatalogRecords.load(on: connection)
        func values(over span: Period) throws -> [String: Quantity] {
            span.start < span.end ? try UsageReader.values(tenant: tenant, over: span, catalog: catalog, on: connection) : [:]
        }
        func counted(_ period: Period) -> Period {
            Period(start: period.start, end: max(period.start, min(asOf, period.end)))
        }

        switch locate(asOf, in: subscriptions) {
        case .billing(let stored, let billing):
            let span = counted(billing.billed)
            let current = try values(over: span)
            let late = try InvoiceGenerator.lateUsage(stored, before: billing.billed.start, tenant: tenant, catalog: catalog, on: connection)
            let draft = try InvoiceCalculator.invoice(
                for: billing, of: stored.timeline, values: current, lateUsage: late, taxBasisPoints: taxRate)
            let plan = stored.timeline.pricingPlan(of: billing)
            let previous = try stored.timeline.billingPeriod(billing.index - 1).map { try values(over: Self.samePoint(of: $0.billed, as: span)) }
            var upcoming: (BillingPeriod, Plan, InvoiceDraft)? = (billing, plan, draft)
            // Invoiced early (maybe several periods ahead): the first period not invoiced yet,
            // with no usage of its own so far and the late usage of those before it.
            var next: BillingPeriod? = billing
            while let period = next, try InvoiceRecords.isInvoiced(subscription: stored.id, periodStart: period.billed.start.date, on: connection) {
                next = period.index < billing.index + 60 ? stored.timeline.billingPeriod(period.index + 1) : nil
            }
            if next?.index != billing.index {
                upcoming = try next.map { next in
                    let late = try InvoiceGenerator.lateUsage(stored, before: next.billed.start, tenant: tenant, catalog: catalog, on: connection)
                    let draft = try InvoiceCalculator.invoice(for: next, of: stored.timeline, values: [:], lateUsage: late, taxBasisPoints: taxRate)
                    return (next, stored.timeline.pricingPlan(of: next), draft)
                }
            }
            return UsageStatement(
                tenantID: tenant, currency: currency, taxRateBps: taxRate, subscription: stored, plan: plan, kind: .billing,
                period: billing.billed, counted: span,
                metrics: MetricStanding.standings(values: current, plan: plan, lines: draft.lines),
                previous: previous, draft: draft, billingPeriod: billing, upcoming: upcoming)
        case .trial(let stored, let trial):
            let span = counted(trial)
            let plan = stored.timeline.plan(at: asOf)
            return UsageStatement(
                tenantID: tenant, currency: currency, taxRateBps: taxRate, subscription: stored, plan: plan, kind: .trial,
                period: trial, counted: span, metrics: MetricStanding.standings(values: try values(over: span), plan: plan),
                previous: nil, draft: nil, billingPeriod: nil, upcoming: nil)
        case .calendarMonth(let month):
            let span = counted(month)
            let previousMonth = BillingCalendar.utcMonths.period(BillingCalendar.utcMonths.index(containing: asOf) - 1)
            return UsageStatement(
                tenantID: tenant, currency: currency, taxRateBps: taxRate, subscription: nil, plan: nil, kind: .calendarMonth,
                period: month, counted: span, metrics: MetricStanding.standings(values: try values(over: span), plan: nil),
                previous: try values(over: Self.samePoint(of: previousMonth, as: span)), draft: nil, billingPeriod: nil, upcoming: nil)
        }
    }

    /// The part of `previous` as long as `counted` (a period counted up to now): five days
    /// into a period compare with the previous period's first five days, not its whole — else
    /// every card says −100 % on a period's first day.
    public static func samePoint(of previous: Period, as counted: Period) -> Period {
        Period(start: previous.start, end: min(previous.end, previous.start.advanced(byMicroseconds: counted.duration)))
    }

    /// The period open at `asOf`: a subscription's billing period, else its trial, else the
    /// UTC calendar month (usage no subscription covers).
    enum Located {
        case billing(StoredSubscription, BillingPeriod)
        case trial(StoredSubscription, Period)
        case calendarMonth(Period)

        var start: Instant {
            switch self {
            case .billing(_, let period): period.billed.start
            case .trial(_, let trial): trial.start
            case .calendarMonth(let month): month.start
            }
        }
    }

    static func locate(_ asOf: Instant, in subscriptions: [StoredSubscription]) -> Located {
        for stored in subscriptions {
            if let billing = stored.timeline.billingPeriod(containing: asOf) { return .billing(stored, billing) }
        }
        for stored in subscriptions {
            if let trial = stored.timeline.heldTrial, trial.contains(asOf) { return .trial(stored, trial) }
        }
        // The part of the month no subscription covers around `asOf`: after the last one that
        // ended (its usage was billed, or was its trial's) and before the next one starts. The
        // whole month counted a canceled subscription's billed usage again as unbilled.
        let month = BillingCalendar.utcMonths.period(containing: asOf)
        // A subscription canceled before it started (ending where it starts) covered nothing.
        let held = subscriptions.filter { $0.timeline.endsAt != $0.start }
        let ended = held.compactMap(\.timeline.endsAt).filter { $0 <= asOf }.max()
        let next = held.map(\.start).filter { $0 > asOf }.min()
        return .calendarMonth(Period(start: max(month.start, ended ?? month.start), end: min(month.end, next ?? month.end)))
    }

    /// What a tenant's open period bills so far, for listing many tenants (finance's page).
    public struct Charge: Sendable, Equatable {
        public let plan: Plan
        public let kind: PeriodKind
        public let period: Period
        /// The open period's invoice total so far, tax included; zero in a trial; nil when it
        /// does not fit 64-bit cents (a runaway meter), which must not hide the other tenants.
        public let total: Cents?
    }

    /// The charge so far of each of `tenants` with a billing period or trial open at `asOf`
    /// (tenants without one are absent), in a fixed number of statements whatever their
    /// number. Usage is read from the period totals the Aggregator keeps, which hold all
    /// usage stored for the period: at `asOf` = now that is the usage so far (events are
    /// refused more than 5 minutes ahead); periods without totals are read from the rollups,
    /// one by one, only for the tenants that have any.
    public static func charges(of tenants: [UUID], asOf: Instant, on connection: isolated PostgresConnection) throws -> [UUID: Charge] {
        guard !tenants.isEmpty else { return [:] }
        let taxRates = try StatementReads.taxRates(of: tenants, on: connection)
        let plans = try SubscriptionRecords.plans(on: connection)
        let subscriptions = try SubscriptionRecords.subscriptions(of: tenants, plans: plans, on: connection)
        let catalog = try MetricCatalogRecords.load(on: connection)
        var open: [(tenant: UUID, stored: StoredSubscription, billing: BillingPeriod)] = []
        var charges: [UUID: Charge] = [:]
        for tenant in tenants {
            switch locate(asOf, in: subscriptions[tenant] ?? []) {
            case .billing(let stored, let billing): open.append((tenant, stored, billing))
            case .trial(let stored, let trial):
                charges[tenant] = Charge(plan: stored.timeline.plan(at: asOf), kind: .trial, period: trial, total: .zero)
            case .calendarMonth: continue
            }
        }
        // A period invoiced early (an admin run with a later as_of) is not charged again: its
        // tenant's charge so far is the next un-invoiced period's, as its upcoming invoice says.
        let early = Set(try InvoiceRecords.invoiced(open.map { ($0.stored.id, $0.billing.billed.start) }, on: connection).map(\.subscription))
        var ahead: [(tenant: UUID, stored: StoredSubscription, billing: BillingPeriod)] = []
        for (tenant, stored, billing) in open where early.contains(stored.id) {
            // Rare: the periods after it, one by one, until one is not invoiced.
            var next = stored.timeline.billingPeriod(billing.index + 1)
            while let period = next, try InvoiceRecords.isInvoiced(subscription: stored.id, periodStart: period.billed.start.date, on: connection) {
                next = period.index < billing.index + 60 ? stored.timeline.billingPeriod(period.index + 1) : nil
            }
            if let next { ahead.append((tenant, stored, next)) }
        }
        open.removeAll { early.contains($0.stored.id) }
        let periods = open.map { TenantPeriod(tenant: $0.tenant, span: $0.billing.billed) }
        let totals = try UsagePeriodTotals.values(of: Set(periods), catalog: catalog, on: connection)
        let untracked = periods.filter { totals[$0] == nil }
        let withUsage = try StatementReads.tenantsWithUsage(untracked, on: connection)
        let late = try InvoiceGenerator.lateUsage(
            of: (open + ahead).map { ($0.stored, $0.billing.billed.start) }, catalog: catalog, on: connection)
        for (tenant, stored, next) in ahead {
            let total =
                (try? InvoiceCalculator.invoice(
                    for: next, of: stored.timeline, values: [:], lateUsage: late[stored.id] ?? [], taxBasisPoints: taxRates[tenant] ?? 0))?.total
            charges[tenant] = Charge(plan: stored.timeline.pricingPlan(of: next), kind: .billing, period: next.billed, total: total)
        }
        for (tenant, stored, billing) in open {
            let period = TenantPeriod(tenant: tenant, span: billing.billed)
            var values = totals[period] ?? [:]
            if totals[period] == nil, withUsage.contains(tenant) {
                let counted = Period(start: billing.billed.start, end: max(billing.billed.start, min(asOf, billing.billed.end)))
                values = try UsageReader.rangeValues(tenant: tenant, over: counted, catalog: catalog, on: connection)
            }
            // The engine's one failure is an amount beyond 64-bit cents.
            let total =
                (try? InvoiceCalculator.invoice(
                    for: billing, of: stored.timeline, values: values, lateUsage: late[stored.id] ?? [], taxBasisPoints: taxRates[tenant] ?? 0))?
                .total
            charges[tenant] = Charge(plan: stored.timeline.pricingPlan(of: billing), kind: .billing, period: billing.billed, total: total)
        }
        return charges
    }

    /// Where the period open at `asOf` began (billing period, trial or calendar month),
    /// without reading usage: what a history of the current period needs.
    public static func periodStart(tenant: UUID, asOf: Instant, on connection: isolated PostgresConnection) throws -> Instant {
        let plans = try SubscriptionRecords.plans(on: connection)
        return locate(asOf, in: try SubscriptionRecords.subscriptions(of: [tenant], plans: plans, on: connection)[tenant] ?? []).start
    }
}
