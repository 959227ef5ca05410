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
/// usage grew, the value of every metric over each billing period the batch touched
/// (read from the period totals, one row per metric), then
/// - `quota.exceeded` into the outbox the first time a metric goes over its quota
///   in the period (the outbox's unique dedup key makes it once per period);
/// - every alert of the tenant evaluated with the billing engine; a crossing is
///   recorded in `alert_firings` (once per alert, period and threshold) and its
///   `alert.triggered` goes into the outbox in the same transaction;
/// - the tenant's `QuotaState`, broadcast after the commit.
///
/// The whole batch is a fixed number of statements, whatever the number of tenants:
/// the tenants' locks (taken by the ledger before it stores the events, so of two
/// consumers committing usage of one tenant the second sees the first's usage), one read
/// of the period totals, one insert of the firings and one of the outbox rows.
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
    static func touches(_ times: [UUID: Set<Date>], config: UsageConfigCache.Snapshot) -> [UUID: [Touch]] {
        var result: [UUID: [Touch]] = [:]
        for (tenant, tenantTimes) in times {
            var latestByPeriod: [Period: Touch] = [:]
            // In time order, a time inside the last period found (under the same
            // subscription) only moves that period's latest time: the calendar is worked
            // out once per period, not once per event.
            var last: Touch?
            for time in tenantTimes.sorted().map(Instant.init) {
                let subscription = config.subscriptions[tenant]?.last { $0.covers(time) }
                if let held = last, held.span.contains(time), held.subscription?.id == subscription?.id {
                    last = Touch(span: held.span, time: time, subscription: subscription, trial: held.trial)
                } else {
                    let period = subscription?.period(containing: time)
                    let span = period?.span ?? BillingCalendar.utcMonths.period(containing: time)
                    last = Touch(span: span, time: time, subscription: subscription, trial: period?.trial == true)
                }
                if let touch = last, latestByPeriod[touch.span].map({ $0.time < touch.time }) ?? true { latestByPeriod[touch.span] = touch }
            }
            result[tenant] = latestByPeriod.values.sorted { ($0.span.start, $0.span.end) < ($1.span.start, $1.span.end) }
        }
        return result
    }

    static func evaluate(
        _ times: [UUID: Set<Date>], config: UsageConfigCache.Snapshot, now: Date, on connection: isolated PostgresConnection
    ) throws -> Evaluation {
        let touched = touches(times, config: config)
        let periods = Set(touched.flatMap { tenant, touches in touches.map { TenantPeriod(tenant: tenant, span: $0.span) } })
        let totals = try UsagePeriodTotals.values(of: periods, catalog: config.catalog, on: connection)
        var evaluation = Evaluation()
        var outbox: [BillingEvent] = []
        var firings: [Firing] = []
        for tenant in touched.keys.sorted(by: { $0.precedes($1) }) {
            for touch in touched[tenant] ?? [] {
                let period = TenantPeriod(tenant: tenant, span: touch.span)
                // Every touched period was completed before the events were stored; a
                // period that is not (its tenant unknown then) is read from the rollups.
                let values =
                    try totals[period]
                    ?? UsageReader.rangeValues(tenant: tenant, over: touch.span, catalog: config.catalog, on: connection)
                let context = PeriodContext(
                    tenant: tenant, span: touch.span, values: values, plan: touch.subscription.map { $0.timeline.plan(at: touch.time) },
                    time: touch.time.date, now: now)
                outbox += quotaCrossings(context)
                for alert in config.alerts[tenant] ?? [] {
                    if let firing = try evaluate(alert, context, catalog: config.catalog, on: connection) { firings.append(firing) }
                }
                // Only the period in force now is what quota enforcement needs to know.
                guard touch.span.contains(Instant(now)) else { continue }
                evaluation.quotaStates.append(
                    QuotaState(
                        tenantID: tenant, asOf: now, periodStart: touch.span.start.date, periodEnd: touch.span.end.date,
                        subscription: touch.subscription == nil ? .none : (touch.trial ? .trialing : .active),
                        metrics: context.quotaMetrics))
            }
        }
        outbox += try record(firings, on: connection)
        evaluation.billingEvents = try Outbox.enqueue(outbox, on: connection)
        return evaluation
    }

    /// One tenant's period and usage.
    struct PeriodContext {
        let tenant: UUID
        let span: Period
        let values: [String: Quantity]
        let plan: Plan?
        /// The newest event's time; the anomaly rule looks at its hour.
        let time: Date
        let now: Date

        /// `metric` against the plan: the read model `GET /v1/usage` and the dashboard show,
        /// from which quota states, quota crossings and alerts are judged. Built per metric
        /// asked for (this runs for every tenant period of every batch).
        func standing(of metric: String) -> MetricStanding {
            MetricStanding(metric: metric, value: values[metric] ?? .zero, terms: plan?.terms[metric])
        }

        var quotaMetrics: [String: QuotaState.Metric] {
            var metrics: [String: QuotaState.Metric] = [:]
            for metric in Set(values.keys).union(plan?.terms.keys ?? [:].keys) {
                let standing = standing(of: metric)
                metrics[metric] = QuotaState.Metric(
                    used: standing.value, quota: standing.quota, enforcement: standing.enforcement == .hard ? .hard : .soft)
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
        var input = AlertInput(value: standing.value, quota: quota)
        if case .anomaly = alert.rule.condition {
            let (lastHour, trailing) = try hourly(
                tenant: context.tenant, metric: alert.rule.metric, catalog: catalog, at: context.time, on: connection)
            input = AlertInput(value: input.value, quota: quota, lastHour: lastHour, trailingHours: trailing)
        }
        guard !AlertEvaluator.newlyFiring(rules: [alert.rule], input: input, firedThisPeriod: []).isEmpty else { return nil }
        return Firing(alert: alert, context: context, value: input.value, quota: quota)
    }

    /// The hour containing `time` (maybe in progress) and the 24 hours before it,
    /// zero-filled from the first hour with usage: the anomaly rule's input.
    private static func hourly(
        tenant: UUID, metric: String, catalog: MetricCatalog, at time: Date, on connection: isolated PostgresConnection
    ) throws -> (Quantity, [Quantity]) {
        let hour = Instant(microsecondsSinceEpoch: Instant(time).microsecondsSinceEpoch / 3_600_000_000 * 3_600_000_000)
        let byAge = try RecentHours.byAge(
            tenant: tenant, metric: metric, aggregation: catalog.aggregation(for: metric), upTo: hour.date, on: connection)
        let oldest = byAge.keys.filter { $0 > 0 }.max() ?? 0
        let trailing = oldest == 0 ? [] : (1...oldest).reversed().map { byAge[$0] ?? .zero }
        return (byAge[0] ?? .zero, trailing)
    }
}
