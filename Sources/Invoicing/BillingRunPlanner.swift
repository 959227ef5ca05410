import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import TallyMessaging
import TallyOutbox
import TallyStore

/// Finds every (subscription, period) due at `as_of` — period end + grace ≤ as_of, not
/// yet invoiced, several per subscription when billing is behind — and records a
/// billing run with one item and one `invoice.generate` command (in the outbox) per
/// period, all in one transaction: a run is either planned whole or not at all. An ended
/// subscription whose invoiced periods got late usage gets an adjustment item.
public enum BillingRunPlanner {
    public struct Plan: Sendable, Equatable {
        public let runID: UUID
        public let due: Int
    }

    /// Plans the run for every tenant, or only for `tenants` (a re-run for one customer).
    /// How long after its end an ended subscription is still checked for late usage:
    /// the 90 days after which the edge refuses an event (SPEC §3), and some margin.
    static let lateUsageHorizon: TimeInterval = 100 * 86_400

    /// `BILLING_GRACE_SECONDS`' default: a period is billed once `as_of` is an hour past its
    /// end, so late usage of its last hour still lands in it.
    public static let defaultGraceSeconds = 3600

    public static func plan(
        asOf: Date, grace: TimeInterval, tenants: [UUID]? = nil, on connection: isolated PostgresConnection
    ) throws -> Plan {
        // A mistyped tenant id planned an empty run that read as "nothing due".
        let unknown = try (tenants ?? []).filter { try !TenantStore.exists($0, on: connection) }
        guard unknown.isEmpty else { throw UnknownTenant(unknown) }
        let plans = try SubscriptionRecords.plans(on: connection)
        let subscriptions = try SubscriptionRecords.subscriptions(of: tenants, plans: plans, on: connection).values.flatMap { $0 }
        var invoiced: Set<InvoicedPeriod> = []
        for period in try InvoiceRecords.periodStarts(of: tenants == nil ? nil : subscriptions.map(\.id), on: connection) {
            invoiced.insert(InvoicedPeriod(subscription: period.subscription, start: Instant(period.start)))
        }
        let deadline = Instant(asOf.addingTimeInterval(-grace))
        var items: [BillingRunRecords.PlannedItem] = []
        var catalog: MetricCatalog?
        var refused: [(subscription: UUID, reason: String)] = []
        // Ended subscriptions whose invoiced periods may have late usage are checked
        // together (three statements for all of them); should that fail, one at a time.
        var lateChecks: [(subscription: StoredSubscription, index: Int64)] = []
        var planned: [(subscription: StoredSubscription, items: [Item])] = []
        for subscription in subscriptions {
            do {
                let (items, index) = try periodItems(subscription, deadline: deadline, invoiced: invoiced)
                if items.isEmpty, needsLateCheck(subscription, index: index, deadline: deadline, asOf: asOf) {
                    lateChecks.append((subscription, index))
                } else {
                    planned.append((subscription, items))
                }
            } catch {
                // One subscription never stops the run: it is reported, the others are billed.
                refused.append((subscription.id, (error as? PlanningRefusal)?.reason ?? "planning failed: \(error)"))
            }
        }
        if !lateChecks.isEmpty {
            do {
                let late = try connection.withSavepoint("plan_late_usage") { connection in
                    let loaded = try MetricCatalogRecords.load(on: connection)
                    catalog = loaded
                    // Only those whose usage may have changed since billed are read whole.
                    let candidates = try InvoiceGenerator.lateUsageCandidates(
                        lateChecks.map { ($0.subscription, $0.index) }, catalog: loaded, on: connection)
                    return try InvoiceGenerator.lateUsage(
                        of: lateChecks.filter { candidates.contains($0.subscription.id) }.map { ($0.subscription, nil) }, catalog: loaded,
                        on: connection)
                }
                for (subscription, index) in lateChecks {
                    do {
                        let adjusts = try !InvoiceCalculator.adjustmentLines(late[subscription.id] ?? []).isEmpty
                        planned.append(
                            (
                                subscription,
                                adjusts ? [Item(index: index, start: subscription.timeline.endsAt ?? Instant(asOf), kind: "adjustment")] : []
                            ))
                    } catch {
                        refused.append((subscription.id, "planning failed: \(error)"))
                    }
                }
            } catch {
                if let error = error as? PostgresError, error.isConnectionError { throw error }
                for (subscription, _) in lateChecks {
                    do {
                        planned.append(
                            (
                                subscription,
                                try planOne(subscription, deadline: deadline, asOf: asOf, invoiced: invoiced, catalog: &catalog, on: connection)
                            ))
                    } catch {
                        refused.append((subscription.id, (error as? PlanningRefusal)?.reason ?? "planning failed: \(error)"))
                    }
                }
            }
        }
        for (subscription, due) in planned {
            for item in due {
                items.append(
                    BillingRunRecords.PlannedItem(subscription: subscription.id, periodIndex: item.index, periodStart: item.start, kind: item.kind))
            }
        }
        let runID = try BillingRunRecords.insert(asOf: asOf, dueCount: items.count + refused.count, on: connection)
        if !refused.isEmpty {
            try BillingRunRecords.insertFailedItems(run: runID, refused, on: connection)
        }
        guard !items.isEmpty else {
            try BillingRunRecords.complete(runID, on: connection)
            return Plan(runID: runID, due: 0)
        }
        try BillingRunRecords.insertItems(run: runID, items, on: connection)
        let commands = items.map { item in
            InvoiceGenerateCommand(
                billingRunID: runID, subscriptionID: item.subscription, periodIndex: item.periodIndex,
                kind: item.kind == "adjustment" ? item.kind : nil)
        }
        try Outbox.enqueue(commands, on: connection)
        return Plan(runID: runID, due: items.count)
    }
}

extension BillingRunPlanner {
    /// The most periods one run plans for one subscription (five years of monthly
    /// periods): a backlog beyond it — a start far in the past — is billed by the next
    /// runs, oldest first, so one subscription never floods a run (numbers, locks).
    static let maximumPeriodsPerSubscription = 60

    /// A period invoice that exists: its subscription and the period's start.
    struct InvoicedPeriod: Hashable {
        let subscription: UUID
        let start: Instant
    }

    /// One (period or adjustment) item to plan.
    struct Item {
        let index: Int64
        let start: Instant
        let kind: String
    }

    /// Why a subscription was not planned, for the run's failed item.
    struct PlanningRefusal: Error {
        let reason: String
    }

    /// The items due for one subscription: every period ended by `deadline` and not yet
    /// invoiced; or, once it has ended and all are invoiced, an adjustment when late
    /// usage changes a charge (SPEC §2 step 3). Usage older than 90 days is refused at
    /// the edge, so subscriptions that ended long ago are not looked at. Its reads run
    /// in a savepoint, so a failure leaves the run's transaction usable.
    static func planOne(
        _ subscription: StoredSubscription, deadline: Instant, asOf: Date, invoiced: Set<InvoicedPeriod>, catalog: inout MetricCatalog?,
        on connection: isolated PostgresConnection
    ) throws -> [Item] {
        let (items, index) = try periodItems(subscription, deadline: deadline, invoiced: invoiced)
        guard items.isEmpty, needsLateCheck(subscription, index: index, deadline: deadline, asOf: asOf),
            let endsAt = subscription.timeline.endsAt
        else { return items }
        return try connection.withSavepoint("plan_subscription") { connection in
            if catalog == nil { catalog = try MetricCatalogRecords.load(on: connection) }
            let late = try InvoiceGenerator.lateUsage(
                subscription, before: nil, tenant: subscription.tenantID, catalog: catalog!, on: connection)
            let adjusts = try !InvoiceCalculator.adjustmentLines(late).isEmpty
            return adjusts ? [Item(index: index, start: endsAt, kind: "adjustment")] : []
        }
    }

    /// Every period ended by `deadline` and not yet invoiced (at most
    /// `maximumPeriodsPerSubscription`), and the index after the last period looked at.
    static func periodItems(
        _ subscription: StoredSubscription, deadline: Instant, invoiced: Set<InvoicedPeriod>
    ) throws -> (items: [Item], index: Int64) {
        var items: [Item] = []
        var index: Int64 = 0
        while let period = subscription.timeline.billingPeriod(index), period.billed.end <= deadline {
            guard period.billed.start >= earliestPeriodStart else {
                throw PlanningRefusal(
                    reason: "the subscription's period \(index) starts at \(period.billed.start), before 2000: "
                        + "correct its start (admin) and bill it again")
            }
            if !invoiced.contains(InvoicedPeriod(subscription: subscription.id, start: period.billed.start)) {
                items.append(Item(index: index, start: period.billed.start, kind: "period"))
                if items.count == maximumPeriodsPerSubscription { return (items, index) }
            }
            index += 1
        }
        return (items, index)
    }

    /// Whether an ended subscription with every period invoiced may still get late usage
    /// (it ended within the last 100 days).
    static func needsLateCheck(_ subscription: StoredSubscription, index: Int64, deadline: Instant, asOf: Date) -> Bool {
        guard let endsAt = subscription.timeline.endsAt else { return false }
        return endsAt <= deadline && endsAt.date > asOf.addingTimeInterval(-lateUsageHorizon) && index > 0
    }

    /// Re-runs billing run `runID` once the cause of its failures is fixed: a new run at the
    /// same `as_of` for the tenants of its failed items (whatever of theirs is due and not
    /// invoiced: issued invoices are never issued twice), and those failed items are marked
    /// `skipped`, superseded by the new run, in the same transaction. Nil when the run does
    /// not exist; a plan of 0 due when nothing of it failed.
    public static func rerun(
        _ runID: UUID, grace: TimeInterval, on connection: isolated PostgresConnection
    ) throws -> (plan: Plan, asOf: Date, tenants: Int)? {
        guard let asOf = try BillingRunRecords.lockAsOf(runID, on: connection) else { return nil }
        let tenants = try BillingRunRecords.tenantsOfFailedItems(runID, on: connection)
        guard !tenants.isEmpty else { return (Plan(runID: runID, due: 0), asOf, 0) }
        let plan = try plan(asOf: asOf, grace: grace, tenants: tenants, on: connection)
        try BillingRunRecords.supersedeFailedItems(of: runID, by: plan.runID, on: connection)
        return (plan, asOf, tenants.count)
    }

    /// No period before 2000 is billed (no time before it is accepted anywhere).
    static let earliestPeriodStart = Instant(year: 2000, month: 1, day: 1)
}

/// A billing run's progress.
public struct BillingRunStatus: Codable, Sendable, Equatable {
    public let id: UUID
    public let asOf: Date
    /// `running` until no item is pending, then `completed`.
    public let status: String
    public let due: Int
    /// Invoices this run issued.
    public let issued: Int
    /// Periods another run had invoiced by their turn (runs at the same time, or a rerun):
    /// their invoice is the same, counted once, by the run that issued it.
    public let alreadyIssued: Int
    /// Periods that no longer existed when their turn came (canceled after planning).
    public let skipped: Int
    public let failed: Int
    public let pending: Int

    enum CodingKeys: String, CodingKey {
        case id, status, due, issued, skipped, failed, pending
        case asOf = "as_of"
        case alreadyIssued = "already_issued"
    }

    /// Up to `limit` runs, newest first, after the run `after`; nil when `after` is no run.
    public static func page(after: UUID?, limit: Int, on connection: isolated PostgresConnection) throws -> [BillingRunStatus]? {
        if let after, try !BillingRunRecords.exists(after, on: connection) { return nil }
        let ids = try BillingRunRecords.ids(after: after, limit: limit, on: connection)
        return try ids.compactMap { try load($0, on: connection) }
    }

    /// One item of a run, as `invoicer dlq show` prints it: its status, its invoice once
    /// issued, and the reason it failed or was skipped; nil when the run has no such item.
    public static func item(
        run: UUID, subscription: UUID, periodIndex: Int64, on connection: isolated PostgresConnection
    ) throws -> (status: String, invoiceID: UUID?, error: String?)? {
        try BillingRunRecords.item(run: run, subscription: subscription, periodIndex: periodIndex, on: connection)
    }

    /// The run, or nil.
    public static func load(_ id: UUID, on connection: isolated PostgresConnection) throws -> BillingRunStatus? {
        guard let counts = try BillingRunRecords.counts(id, on: connection) else { return nil }
        return BillingRunStatus(
            id: id, asOf: counts.asOf, status: counts.pending == 0 ? "completed" : "running", due: counts.due, issued: counts.issued,
            alreadyIssued: counts.alreadyIssued, skipped: counts.skipped, failed: counts.failed, pending: counts.pending)
    }
}
