import BillingEngine
import CivilTime
import Foundation
import Metering
import PostgresClient
import TallyStore

/// What one committed batch changed.
struct LedgerOutcome: Sendable {
    /// Events stored for the first time.
    var inserted = 0
    /// Events whose (tenant, id) was already stored: counted before, skipped now.
    var duplicates = 0
    /// Events parked in `parked_events` (invalid, or of an unknown tenant).
    var parked = 0
    /// Tenants with newly stored events: how many, and the first few (for a debug log).
    var tenantsInserted = 0
    var someTenantsInserted: [UUID] = []
    /// The touched tenants' usage against their quotas, to broadcast after the commit.
    var quotaStates: [QuotaState] = []
    /// Events of tenants that do not exist, taken out of the batch but not parked (when
    /// the ledger was asked to leave that to a later transaction of the same batch).
    var unknownTenantEvents: [ParkedEvent] = []
    /// Billing events written to the outbox in this transaction.
    var billingEvents = 0
    /// The periods this transaction completed (or found complete) before storing the events.
    var completedPeriods: Set<TenantPeriod> = []
    /// Seconds per phase of the transaction (the commit included).
    var phases: [UsageLedger.Phase: Double] = [:]
}

/// Writes decoded usage into PostgreSQL exactly once, in one transaction:
///
/// 1. COPY the batch into a session-local staging table (unless the caller staged it there
///    ahead, a chunk at a time as it decoded it: `DecodedBatch.rowsStaged`);
/// 2. park the events of tenants that do not exist (with their reason);
/// 3. insert the ids into `usage_event_ids` with `ON CONFLICT DO NOTHING` (the dedup on
///    tenant and id, whatever the event's month; within one batch the earliest time of
///    an id wins, then the smallest metric, quantity and metadata), insert only the events whose id that returned into `usage_events`,
///    and fold only those into the hourly rollups and into the completed period totals
///    of their tenants (`UsagePeriodTotals`), in a consistent (tenant, metric, hour or
///    period) order so concurrent consumers never deadlock on those rows;
/// 4. store the invalid events in `parked_events`;
/// 5. evaluate quotas and alerts of the tenants whose usage grew, with the period totals
///    as step 3 left them.
///
/// Before all that, the periods the events fall in are completed (`UsagePeriodTotals`), in
/// a short transaction of its own: each period's totals stay equal to an aggregation of
/// its events while batches of one tenant store side by side. A period is completed by the
/// one transaction that inserts its `usage_periods` row; another completing it at the same
/// time waits on that row, then finds it complete and adds its events to the totals. A
/// batch whose configuration is older than a period cannot store events in it unseen:
/// the batch holds its tenants' usage locks shared from before it reads the
/// configuration until it commits, and a change to a tenant's subscriptions takes that
/// lock exclusive (migration 023). No batch takes a usage lock exclusive.
///
/// The caller acks the messages only after this commits; a redelivery after a
/// crash finds its events already stored and counts nothing twice.
enum UsageLedger {
    /// Writes `batch`; then, in the same transaction, evaluates the touched tenants'
    /// quotas and alerts (`UsageStateEvaluator`) so a firing commits with its usage.
    /// Events of tenants that do not exist are parked, unless `parkingUnknownTenants` is
    /// false: then they are only taken out and returned (`unknownTenantEvents`), for the
    /// batch's last transaction to park — a batch written in parts is retried whole after
    /// a part failed, and its earlier parts must not park the same events again.
    /// `betweenTransactions` runs after the completion transaction, before the batch's
    /// (tests change the world there).
    static func record(
        _ batch: consuming DecodedBatch, now: Date, cache: UsageConfigCache = UsageConfigCache(), parkingUnknownTenants: Bool = true,
        on connection: PostgresConnection, betweenTransactions: (@Sendable () async throws -> Void)? = nil
    ) async throws -> LedgerOutcome {
        let staged = batch.stagedRows.buffer
        let (parkedEvents, eventCount, rowsStaged, earliestAcceptance) = (
            batch.parkedEvents, batch.eventCount, batch.rowsStaged, batch.earliestAcceptance
        )
        let started = ContinuousClock.now
        // The events' times, dropped once the periods they fall in are known, and the batch
        // (its tenant-hours) at once: neither is held through the rest of the transaction.
        let stagedTimes = Dropping(batch.stagedTimes)
        _ = consume batch
        let tenants = stagedTimes.value.keys.sorted { $0.precedes($1) }
        // Periods to complete first, in a short transaction of their own: once it commits
        // they are complete for every batch, and a batch completing the same periods meanwhile
        // waits on their rows only that long, not for this batch to be stored.
        let completion = tenants.isEmpty ? Completion() : try await complete(stagedTimes.value, tenants: tenants, cache: cache, on: connection)
        try await betweenTransactions?()
        var outcome = try await connection.withTransaction { connection in
            var outcome = LedgerOutcome(parked: parkedEvents.count)
            outcome.phases = completion.phases
            var clock = PhaseClock()
            try ParkedEvents.store(parkedEvents, on: connection)
            guard eventCount > 0 else { return outcome }
            // Staged first (session-local: no lock needed) unless staged ahead, then the
            // tenants' usage locks (shared: transactions storing events of a tenant do not
            // wait for one another; only a change to the tenant's subscriptions takes it
            // exclusive, migration 023) and their configuration as committed now.
            if !rowsStaged {
                try UsageEventStore.stage(staged, on: connection)
                clock.lap(.copy, into: &outcome.phases)
            }
            try UsagePeriodTotals.lockUsage(tenants, on: connection)
            let config = try cache.snapshot(for: tenants, on: connection)
            clock.lap(.lockAndConfiguration, into: &outcome.phases)
            // The events of tenants that do not exist go first (the snapshot's statement said
            // which; none, as a rule, and then no statement runs): every tenant whose events
            // stay existed when that statement began, so the completion below, which begins
            // later, sees it too (a tenant created since the completion transaction has its
            // periods completed here, not stored into unseen).
            if !config.absent.isEmpty {
                if parkingUnknownTenants {
                    outcome.parked += try UsageEventStore.parkUnknownTenants(config.absent, acceptedAt: earliestAcceptance, on: connection)
                } else {
                    outcome.unknownTenantEvents = try UsageEventStore.takeOutUnknownTenants(
                        config.absent, acceptedAt: earliestAcceptance, on: connection)
                }
            }
            // Every period the events fall in is complete by now, unless the configuration
            // changed since (a subscription created in between) or the tenant was created
            // since: then it is completed here.
            let missing = cache.notKnownComplete(Self.periods(stagedTimes.value, config: config) { !config.absent.contains($0) })
            stagedTimes.drop()
            if !missing.isEmpty {
                outcome.completedPeriods = try UsagePeriodTotals.complete(missing, on: connection)
            }
            clock.lap(.completePeriods, into: &outcome.phases)
            // For each tenant, the earliest and latest time of its newly stored events in
            // every hour they touch: enough to find every billing period the batch changed.
            // Held only through the evaluation, not with the outcome.
            var times: TenantTimes = [:]
            var inserted = 0
            let totals = try UsageEventStore.storeStaged(on: connection) { hour in
                inserted += hour.count
                times[hour.tenant, default: []].append(contentsOf: [hour.earliest, hour.latest])
            }
            outcome.inserted = inserted
            outcome.tenantsInserted = times.count
            outcome.someTenantsInserted = Self.first(20, of: times.keys)
            outcome.duplicates =
                eventCount - outcome.inserted - (outcome.parked - parkedEvents.count)
                - outcome.unknownTenantEvents.count
            clock.lap(.insertAndRollUp, into: &outcome.phases)
            if !times.isEmpty {
                let evaluation = try UsageStateEvaluator.evaluate(times, totals: consume totals, config: config, now: now, on: connection)
                outcome.quotaStates = evaluation.quotaStates
                outcome.billingEvents = evaluation.billingEvents
            }
            clock.lap(.evaluate, into: &outcome.phases)
            return outcome
        }
        // Known complete only once committed (a rollback takes the completion back).
        cache.rememberComplete(outcome.completedPeriods)
        let inside = outcome.phases.values.reduce(0, +)
        outcome.phases[.commit] = max(0, (ContinuousClock.now - started).seconds - inside)
        return outcome
    }

    /// The first `count` of `tenants` in lock order, without sorting them all.
    static func first(_ count: Int, of tenants: some Sequence<UUID>) -> [UUID] {
        var first: [UUID] = []
        guard count > 0 else { return first }
        for tenant in tenants where first.count < count || tenant.precedes(first[count - 1]) {
            let index = first.firstIndex { tenant.precedes($0) } ?? first.count
            first.insert(tenant, at: index)
            if first.count > count { first.removeLast() }
        }
        return first
    }

    /// What the completion transaction did.
    struct Completion {
        var phases: [Phase: Double] = [:]
    }

    /// Completes, in a transaction of its own, the periods the events at `times` fall in
    /// that this process does not know complete (guessed from the configuration it holds,
    /// then decided with the configuration as committed now); commits and remembers them.
    /// Nothing when the cache knows every period complete.
    private static func complete(
        _ times: TenantTimes, tenants: [UUID], cache: UsageConfigCache, on connection: PostgresConnection
    ) async throws -> Completion {
        let (cached, unknown) = cache.peek(tenants)
        let guessed = Set(
            cache.notKnownComplete(periods(times, config: cached) { !unknown.contains($0) }).map(\.tenant)
        ).union(unknown)
        guard !guessed.isEmpty else { return Completion() }
        let wanted = tenants.filter(guessed.contains)
        let (completion, completed) = try await connection.withTransaction { connection in
            var completion = Completion()
            var clock = PhaseClock()
            let config = try cache.snapshot(for: wanted, on: connection)
            clock.lap(.lockAndConfiguration, into: &completion.phases)
            let missing = cache.notKnownComplete(
                periods(times, config: config) { guessed.contains($0) && !config.absent.contains($0) })
            let completed = try UsagePeriodTotals.complete(missing, on: connection)
            clock.lap(.completePeriods, into: &completion.phases)
            return (completion, completed)
        }
        cache.rememberComplete(completed)
        return completion
    }

    /// The periods (billing period, trial or calendar month) the events at `times` of the
    /// tenants `including` takes fall in: worked out a tenant at a time, only the periods kept.
    static func periods(
        _ times: TenantTimes, config: UsageConfigCache.Snapshot, including: (UUID) -> Bool = { _ in true }
    ) -> Set<TenantPeriod> {
        var periods = Set<TenantPeriod>(minimumCapacity: times.count)
        var month: Period?
        for (tenant, tenantTimes) in times where including(tenant) {
            for touch in UsageStateEvaluator.touches(of: tenantTimes, subscriptions: config.subscriptions[tenant] ?? [], month: &month) {
                periods.insert(TenantPeriod(tenant: tenant, span: touch.span))
            }
        }
        return periods
    }

    /// Where a batch's time goes, for `/metrics` (the end-to-end breakdown of the benchmark).
    enum Phase: String, CaseIterable, Sendable {
        case decode, copy
        case lockAndConfiguration = "lock_and_configuration"
        case completePeriods = "complete_periods"
        case insertAndRollUp = "insert_and_roll_up"
        case evaluate, commit
    }

    /// Seconds since the last lap.
    struct PhaseClock {
        private var last = ContinuousClock.now

        mutating func lap(_ phase: Phase, into phases: inout [Phase: Double]) {
            let now = ContinuousClock.now
            phases[phase, default: 0] += (now - last).seconds
            last = now
        }
    }
}

/// The times of a batch's events by tenant: the earliest and the latest in each hour they
/// touch, in no particular order (a time may appear twice). An array per tenant, not a set:
/// a transaction of 50,000 tenants holds one for each.
typealias TenantTimes = [UUID: [Date]]

/// A value a transaction's body lets go of once done with it, so its memory is freed
/// before the rest of the transaction runs (the body is `@Sendable`: it cannot clear a
/// variable it captured). Used by one transaction at a time.
final class Dropping<Value>: @unchecked Sendable {
    private var held: Value?

    init(_ value: Value) { held = value }

    /// The value; only before `drop`.
    var value: Value { held! }

    func drop() { held = nil }
}
