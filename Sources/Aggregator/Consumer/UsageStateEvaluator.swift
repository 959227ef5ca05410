import BillingEngine
import CivilTime
import Foundation
import Metering
import PostgresClient
import TallyMessaging
import TallyOutbox
import TallyRuntime
import TallyStore

/// After a batch's usage is written, and in its transaction: for each tenant whose
/// usage grew, the value of every metric the batch counted over each billing period it
/// touched — the period totals as the batch's statement left them — then
/// - `quota.exceeded` into the outbox the first time a metric goes over its quota
///   in the period (the outbox's unique dedup key makes it once per period);
/// - the tenant's alerts on those metrics evaluated with the billing engine; a crossing
///   is recorded in `alert_firings` (once per alert, period and threshold) and its
///   `alert.triggered` goes into the outbox in the same transaction;
/// - the tenant's `QuotaState` for those metrics, broadcast after the commit.
///
/// A metric the batch did not count has not moved, so nothing about it can newly cross;
/// a plan or an alert changed since is judged on the metric's next usage.
///
/// The values are read from nothing: each total's row is where the transactions adding
/// to it meet (the second waits for the first's commit and adds to what it committed),
/// so the total a statement returns counts every batch committed before it, whichever
/// consumer or process wrote them. Only three things are read, after the evaluation
/// locks of their tenants (so of two transactions, the second reads once the first
/// committed): unique_count values (rows of their own), a period without totals, and
/// the hours an anomaly rule compares. The whole batch is a fixed number of statements,
/// whatever the number of tenants.
enum UsageStateEvaluator {
    struct Evaluation {
        var quotaStates: [QuotaState] = []
        var billingEvents = 0
    }

    /// A period a batch touched: evaluated once, at the latest time the batch saw in it.
    struct Touch {
        let span: Period
        let time: Instant
        let subscription: StoredSubscription?
        let trial: Bool
    }

    /// For each tenant, the periods (billing period, trial or calendar month) its events
    /// at `times` fall in, oldest first.
    ///
    /// Runs for every tenant of every batch, up to three times (the guess before the
    /// completion, the check inside the batch's transaction, the evaluation), so it
    /// allocates little: a tenant's touches are a short array searched in place (a batch
    /// touches one or two periods of a tenant), and the calendar month last worked out is
    /// reused for the next time inside it, whichever tenant's (most are in the same month).
    static func touches(_ times: TenantTimes, config: UsageConfigCache.Snapshot) -> [UUID: [Touch]] {
        var result: [UUID: [Touch]] = Dictionary(minimumCapacity: times.count)
        var month: Period?
        for (tenant, tenantTimes) in times {
            result[tenant] = touches(of: tenantTimes, subscriptions: config.subscriptions[tenant] ?? [], month: &month)
        }
        return result
    }

    /// The periods one tenant's events at `times` fall in, oldest first; `month` is the
    /// calendar month last worked out (for the next tenant's times).
    static func touches(of times: [Date], subscriptions: [StoredSubscription], month: inout Period?) -> [Touch] {
        var found: [Touch] = []
        // In time order, a time inside the last period found (under the same subscription)
        // only moves that period's latest time: the calendar is worked out once per period,
        // not once per event.
        var last: Touch?
        for date in times.sorted() {
            let time = Instant(date)
            let subscription = subscriptions.last { $0.covers(time) }
            let touch: Touch
            if let held = last, held.span.contains(time), held.subscription?.id == subscription?.id {
                touch = Touch(span: held.span, time: time, subscription: subscription, trial: held.trial)
            } else if let period = subscription?.period(containing: time) {
                touch = Touch(span: period.span, time: time, subscription: subscription, trial: period.trial)
            } else {
                let span = month.flatMap { $0.contains(time) ? $0 : nil } ?? BillingCalendar.utcMonths.period(containing: time)
                month = span
                touch = Touch(span: span, time: time, subscription: subscription, trial: false)
            }
            last = touch
            if let index = found.firstIndex(where: { $0.span == touch.span }) {
                if found[index].time < touch.time { found[index] = touch }
            } else {
                found.append(touch)
            }
        }
        if found.count > 1 { found.sort { ($0.span.start, $0.span.end) < ($1.span.start, $1.span.end) } }
        return found
    }

    /// The metrics a batch counted in one period: their values and event counts.
    struct PeriodUsage {
        var values: [String: Quantity] = [:]
        var events: [String: Int64] = [:]
    }

    /// The tenants evaluated together: a batch of more is evaluated a chunk at a time.
    static let tenantsPerEvaluation = 5_000

    /// Evaluates the tenants whose events at `times` were stored, with `totals`, the period
    /// totals the statement storing them returned.
    ///
    /// A chunk of `tenantsPerEvaluation` tenants at a time, in the order of their locks
    /// (each chunk's evaluation locks come after the previous chunk's, so the order every
    /// transaction takes them in holds): what an evaluation holds — the periods touched,
    /// their usage, the contexts judged — grows with the chunk, not with the batch (a
    /// transaction of 50,000 tenants held about 35 MB of it at once). The firings and the
    /// outbox rows are written once, after every chunk: an insert that waits on another
    /// transaction's row never comes before an evaluation lock this one has yet to take.
    static func evaluate(
        _ times: TenantTimes, totals: consuming [UsagePeriodTotals.StoredTotal], config: UsageConfigCache.Snapshot, now: Date,
        on connection: isolated PostgresConnection
    ) throws -> Evaluation {
        var evaluation = Evaluation()
        var pending = Pending()
        if times.count <= tenantsPerEvaluation {
            evaluation.quotaStates = try evaluateChunk(times, totals: totals, config: config, now: now, pending: &pending, on: connection)
        } else {
            // Sorted in place: the caller's totals are this array (consumed), not copied.
            var sortedTotals = consume totals
            sortedTotals.sort { $0.period.tenant.precedes($1.period.tenant) }
            evaluation.quotaStates = try evaluateInChunks(
                times, sortedTotals: sortedTotals, config: config, now: now, pending: &pending, on: connection)
        }
        let outbox = pending.outbox + (try record(pending.firings, on: connection))
        evaluation.billingEvents = try Outbox.enqueue(outbox, on: connection)
        return evaluation
    }

    /// What an evaluation writes, once every chunk is evaluated.
    private struct Pending {
        var outbox: [BillingEvent] = []
        var firings: [Firing] = []
    }

    /// `evaluateChunk` over each chunk of `tenantsPerEvaluation` tenants, in lock order
    /// (`sortedTotals` in their tenants' lock order).
    private static func evaluateInChunks(
        _ times: TenantTimes, sortedTotals: [UsagePeriodTotals.StoredTotal], config: UsageConfigCache.Snapshot, now: Date,
        pending: inout Pending, on connection: isolated PostgresConnection
    ) throws -> [QuotaState] {
        let tenants = times.keys.sorted { $0.precedes($1) }
        var quotaStates: [QuotaState] = []
        var next = 0  // the first of `sortedTotals` not evaluated yet
        for start in stride(from: 0, to: tenants.count, by: tenantsPerEvaluation) {
            let chunk = tenants[start..<min(start + tenantsPerEvaluation, tenants.count)]
            var chunkTimes: TenantTimes = Dictionary(minimumCapacity: chunk.count)
            for tenant in chunk { chunkTimes[tenant] = times[tenant] }
            // The totals of the chunk's tenants: those before the next chunk's first tenant.
            let end = start + tenantsPerEvaluation < tenants.count ? tenants[start + tenantsPerEvaluation] : nil
            var last = next
            while last < sortedTotals.count, end.map({ sortedTotals[last].period.tenant.precedes($0) }) ?? true { last += 1 }
            quotaStates += try evaluateChunk(
                chunkTimes, totals: Array(sortedTotals[next..<last]), config: config, now: now, pending: &pending, on: connection)
            next = last
        }
        return quotaStates
    }

    /// The quota states of the tenants at `times`; their quota crossings and alert firings
    /// go to `pending`.
    private static func evaluateChunk(
        _ times: TenantTimes, totals: [UsagePeriodTotals.StoredTotal], config: UsageConfigCache.Snapshot, now: Date,
        pending: inout Pending, on connection: isolated PostgresConnection
    ) throws -> [QuotaState] {
        let touched = touches(times, config: config)
        let usage = try self.usage(of: touched, totals: totals, alerts: config.alerts, catalog: config.catalog, now: now, on: connection)
        var quotaStates: [QuotaState] = []
        for tenant in touched.keys.sorted(by: { $0.precedes($1) }) {
            for touch in touched[tenant] ?? [] {
                let period = TenantPeriod(tenant: tenant, span: touch.span)
                let counted = usage[period] ?? PeriodUsage()
                let context = PeriodContext(
                    tenant: tenant, span: touch.span, values: counted.values, events: counted.events,
                    plan: touch.subscription.map { $0.timeline.plan(at: touch.time) }, time: touch.time.date,
                    hours: Self.hours(of: times[tenant] ?? [], in: touch.span), now: now)
                pending.outbox += quotaCrossings(context)
                for alert in config.alerts[tenant] ?? [] where counted.values[alert.rule.metric] != nil {
                    if let firing = try evaluate(alert, context, catalog: config.catalog, on: connection) { pending.firings.append(firing) }
                }
                // Only the period in force now is what quota enforcement needs to know.
                guard touch.span.contains(Instant(now)) else { continue }
                quotaStates.append(
                    QuotaState(
                        tenantID: tenant, asOf: now, periodStart: touch.span.start.date, periodEnd: touch.span.end.date,
                        subscription: touch.subscription == nil ? .none : (touch.trial ? .trialing : .active),
                        metrics: context.quotaMetrics))
            }
        }
        return quotaStates
    }

    /// Each touched period's usage of the metrics the batch counted in it: from `totals`
    /// where they say it, else read after the tenant's evaluation lock — unique_count
    /// values, and every metric of a period that has no totals (not complete: its tenant
    /// was unknown when the batch's periods were completed). The tenants whose anomaly
    /// rules will read hours take their locks here too, before any read.
    ///
    /// The period in force also carries the plan's hard-enforced metrics the batch did not
    /// count, as committed now (read, without a lock: of two positions of a metric a view
    /// keeps the one with more events), so every quota state says where each hard quota
    /// stands under the plan in force — after an upgrade, a metric refused at the old
    /// quota is let through at the next state, whatever metric it counts — and a listener
    /// that takes each state whole still holds every hard quota.
    static func usage(
        of touched: [UUID: [Touch]], totals: [UsagePeriodTotals.StoredTotal], alerts: [UUID: [StoredAlert]], catalog: MetricCatalog,
        now: Date, on connection: isolated PostgresConnection
    ) throws -> [TenantPeriod: PeriodUsage] {
        let byPeriod = Dictionary(grouping: totals, by: \.period)
        var usage: [TenantPeriod: PeriodUsage] = [:]
        var reads = Set<TenantPeriod>()
        var locked = Set<UUID>()
        var hard: [TenantPeriod: [String]] = [:]
        for (tenant, touches) in touched {
            for touch in touches {
                let period = TenantPeriod(tenant: tenant, span: touch.span)
                if touch.span.contains(Instant(now)), let plan = touch.subscription?.timeline.plan(at: touch.time) {
                    let metrics = plan.terms.filter { $0.value.enforcement == .hard }.map(\.key)
                    if !metrics.isEmpty { hard[period] = metrics }
                }
                guard let stored = byPeriod[period] else {
                    reads.insert(period)
                    continue
                }
                var counted = PeriodUsage()
                for total in stored {
                    counted.events[total.metric] = total.eventCount
                    if let value = try total.value(catalog.aggregation(for: total.metric)) {
                        counted.values[total.metric] = value
                    } else {
                        reads.insert(period)
                    }
                    let anomaly = alerts[tenant]?.contains { alert in
                        guard alert.rule.metric == total.metric, case .anomaly = alert.rule.condition else { return false }
                        return true
                    }
                    if anomaly == true { locked.insert(tenant) }
                }
                usage[period] = counted
            }
        }
        // The hard-enforced metrics the batch did not count, where it counted others.
        let uncounted = hard.filter { period, metrics in
            usage[period].map { counted in metrics.contains { counted.events[$0] == nil } } ?? false
        }
        if !uncounted.isEmpty {
            let committed = try UsagePeriodTotals.storedTotals(of: Set(uncounted.keys), on: connection)
            for (period, metrics) in uncounted {
                for metric in metrics where usage[period]?.events[metric] == nil {
                    guard let total = committed[period]?[metric] else {
                        usage[period]?.values[metric] = .zero
                        usage[period]?.events[metric] = 0
                        continue
                    }
                    usage[period]?.events[metric] = total.eventCount
                    if let value = try total.value(catalog.aggregation(for: metric)) {
                        usage[period]?.values[metric] = value
                    } else {
                        reads.insert(period)
                    }
                }
            }
        }
        locked.formUnion(reads.map(\.tenant))
        guard !locked.isEmpty else { return usage }
        try UsagePeriodTotals.lockEvaluation(locked.sorted { $0.precedes($1) }, on: connection)
        guard !reads.isEmpty else { return usage }
        let read = try UsagePeriodTotals.values(of: reads, catalog: catalog, on: connection)
        for period in reads {
            if var counted = usage[period] {
                // The unique_count metrics the batch counted: their distinct values.
                for metric in counted.events.keys where counted.values[metric] == nil {
                    counted.values[metric] = read[period]?[metric] ?? .zero
                }
                usage[period] = counted
            } else {
                usage[period] = PeriodUsage(
                    values: try read[period]
                        ?? UsageReader.rangeValues(tenant: period.tenant, over: period.span, catalog: catalog, on: connection))
            }
        }
        return usage
    }

    /// One tenant's period and usage.
    struct PeriodContext {
        let tenant: UUID
        let span: Period
        /// The metrics the batch counted, each over the whole period.
        let values: [String: Quantity]
        /// Their event counts in the period (absent where read from the rollups).
        let events: [String: Int64]
        let plan: Plan?
        /// The newest event's time.
        let time: Date
        /// The hours the batch's events of the tenant fell in within the period, oldest
        /// first: the anomaly rule judges each (only the newest's, a spike followed in the
        /// same batch by an event of the next hour was never judged).
        let hours: [Date]
        let now: Date

        /// `metric` against the plan: the read model `GET /v1/usage` and the dashboard show,
        /// from which quota states, quota crossings and alerts are judged. Built per metric
        /// asked for (this runs for every tenant period of every batch).
        func standing(of metric: String) -> MetricStanding {
            MetricStanding(metric: metric, value: values[metric] ?? .zero, terms: plan?.terms[metric])
        }

        /// The counted metrics' positions (a `QuotaView` keeps the others as it has them).
        var quotaMetrics: [String: QuotaState.Metric] {
            var metrics: [String: QuotaState.Metric] = [:]
            for metric in values.keys {
                let standing = standing(of: metric)
                metrics[metric] = QuotaState.Metric(
                    used: standing.value, quota: standing.quota, enforcement: standing.enforcement == .hard ? .hard : .soft,
                    events: events[metric])
            }
            return metrics
        }
    }

    private static func quotaCrossings(_ context: PeriodContext) -> [BillingEvent] {
        guard let plan = context.plan else { return [] }
        var events: [BillingEvent] = []
        for standing in plan.terms.keys.sorted().map(context.standing(of:)) {
            guard let quota = standing.quota, !standing.isUnlimited, standing.value > quota else { continue }
            events.append(
                .quotaExceeded(
                    BillingEvent.QuotaExceeded(
                        tenantID: context.tenant, occurredAt: context.now, metric: standing.metric, value: standing.value.description,
                        quota: quota.description, enforcement: (standing.enforcement ?? .soft).rawValue,
                        periodStart: context.span.start.date, periodEnd: context.span.end.date)))
        }
        return events
    }

    /// An alert the engine says fires now, unless it fired already in the period.
    struct Firing {
        let alert: StoredAlert
        let context: PeriodContext
        let value: Quantity
        let quota: Quantity?
    }

    /// Records `firings` in `alert_firings` in one statement; returns the events of those
    /// that were new (once per alert, period and threshold).
    private static func record(_ firings: [Firing], on connection: isolated PostgresConnection) throws -> [BillingEvent] {
        guard !firings.isEmpty else { return [] }
        let new = try AlertFirings.record(
            firings.map {
                AlertFirings.Firing(alert: $0.alert.id, periodStart: $0.context.span.start, thresholdKey: $0.alert.thresholdKey, value: $0.value)
            },
            on: connection)
        return zip(firings, new).compactMap { firing, isNew in
            guard isNew else { return nil }
            let context = firing.context
            return .alertTriggered(
                BillingEvent.AlertTriggered(
                    tenantID: context.tenant, occurredAt: context.now, alertID: firing.alert.id, alertKind: firing.alert.kind,
                    thresholdKey: firing.alert.thresholdKey, metric: firing.alert.rule.metric, value: firing.value.description,
                    threshold: firing.alert.threshold, quota: firing.quota?.description, periodStart: context.span.start.date,
                    periodEnd: context.span.end.date, channels: firing.alert.channels))
        }
    }

    private static func evaluate(
        _ alert: StoredAlert, _ context: PeriodContext, catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> Firing? {
        let standing = context.standing(of: alert.rule.metric)
        let quota = standing.quota
        // No percentage of an "Unlimited" quota is reached (as no quota.exceeded is sent for it).
        let unlimited = quota != nil && standing.isUnlimited
        var inputs = [AlertInput(value: standing.value, quota: quota, quotaIsUnlimited: unlimited)]
        if case .anomaly = alert.rule.condition {
            inputs = try hourly(tenant: context.tenant, metric: alert.rule.metric, catalog: catalog, hours: context.hours, on: connection).map {
                AlertInput(value: standing.value, quota: quota, quotaIsUnlimited: unlimited, lastHour: $0.last, trailingHours: $0.trailing)
            }
        }
        guard inputs.contains(where: { !AlertEvaluator.newlyFiring(rules: [alert.rule], input: $0, firedThisPeriod: []).isEmpty }) else {
            return nil
        }
        return Firing(alert: alert, context: context, value: standing.value, quota: quota)
    }

    /// The most hours of one batch an anomaly rule judges (the newest): late events spread
    /// over a month would otherwise read a month of rollups per alert.
    static let anomalyHoursPerBatch = 48

    /// The distinct hours (their starts) of `times` inside `span`, oldest first, at most
    /// the newest `anomalyHoursPerBatch`.
    static func hours(of times: [Date], in span: Period) -> [Date] {
        let hour: Int64 = 3_600_000_000
        let starts = Set(
            times.lazy.map(Instant.init).filter { span.contains($0) }.map {
                $0.microsecondsSinceEpoch - (($0.microsecondsSinceEpoch % hour) + hour) % hour
            })
        return starts.sorted().suffix(anomalyHoursPerBatch).map { Instant(microsecondsSinceEpoch: $0).date }
    }

    /// For each of `hours` (an hour's start, maybe in progress): its usage and the 24 hours
    /// before it, zero-filled from the first of them with usage — the anomaly rule's input.
    /// One read covers them all.
    private static func hourly(
        tenant: UUID, metric: String, catalog: MetricCatalog, hours: [Date], on connection: isolated PostgresConnection
    ) throws -> [(last: Quantity, trailing: [Quantity])] {
        guard let newest = hours.last, let oldest = hours.first else { return [] }
        let reach = Int((newest.timeIntervalSince(oldest) / 3600).rounded()) + 25
        let byAge = try RecentHours.byAge(
            tenant: tenant, metric: metric, aggregation: catalog.aggregation(for: metric), upTo: newest, hours: reach, on: connection)
        return hours.map { hour in
            let age = Int((newest.timeIntervalSince(hour) / 3600).rounded())
            let first = byAge.keys.filter { $0 > age && $0 <= age + 24 }.max() ?? age
            let trailing = first == age ? [] : (age + 1...first).reversed().map { byAge[$0] ?? .zero }
            return (byAge[age] ?? .zero, trailing)
        }
    }
}
