import BillingEngine
import Foundation
import Metering
import PostgresClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// After a batch's usage is written, and in its transaction: for each tenant whose
/// usage grew, the value of every metric over the billing period containing its
/// newest event, then
/// - `quota.exceeded` into the outbox the first time a metric goes over its quota
///   in the period (the outbox's unique dedup key makes it once per period);
/// - every alert of the tenant evaluated with the billing engine; a crossing is
///   recorded in `alert_firings` (once per alert, period and threshold) and its
///   `alert.triggered` goes into the outbox in the same transaction;
/// - the tenant's `QuotaState`, broadcast after the commit.
///
/// Evaluations of one tenant are serialized by a transaction-scoped advisory lock,
/// so of two consumers committing usage of the same tenant at once, the second sees
/// the first's usage: a threshold crossed only by the two batches together fires.
enum UsageStateEvaluator {
    struct Evaluation {
        var quotaStates: [QuotaState] = []
        var billingEvents = 0
    }

    /// Tenants without a subscription are measured by UTC calendar month.
    static let calendarMonths = BillingCalendar(anchor: Instant(microsecondsSinceEpoch: 0), interval: .monthly)

    static func evaluate(_ times: [UUID: Set<Date>], now: Date, on connection: isolated PostgresConnection) throws -> Evaluation {
        let tenants = times.keys.sorted { $0.uuidString < $1.uuidString }
        for tenant in tenants {
            try connection.query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", [tenant])
        }
        let catalog = try MetricCatalogRecords.load(on: connection)
        let plans = try SubscriptionRecords.plans(on: connection)
        let subscriptions = try SubscriptionRecords.subscriptions(of: tenants, plans: plans, on: connection)
        let alerts = try StoredAlert.load(tenants: tenants, on: connection)
        var evaluation = Evaluation()
        for tenant in tenants {
            // Each period the batch touched, evaluated once at the latest time it saw there.
            var latestByPeriod: [Instant: (Period, Instant, StoredSubscription?, Bool)] = [:]
            for time in (times[tenant] ?? []).map(Instant.init) {
                let subscription = subscriptions[tenant]?.last { $0.covers(time) }
                let period = subscription?.period(containing: time)
                let span = period?.span ?? calendarMonths.period(containing: time)
                if let held = latestByPeriod[span.start], held.1 >= time { continue }
                latestByPeriod[span.start] = (span, time, subscription, period?.trial == true)
            }
            for (span, time, subscription, trial) in latestByPeriod.values.sorted(by: { $0.0.start < $1.0.start }) {
                let values = try UsageReader.values(tenant: tenant, over: span, catalog: catalog, on: connection)
                let context = PeriodContext(
                    tenant: tenant, span: span, values: values, plan: subscription.map { $0.timeline.plan(at: time) },
                    time: time.date, now: now)
                evaluation.billingEvents += try quotaCrossings(context, on: connection)
                for alert in alerts[tenant] ?? [] {
                    evaluation.billingEvents += try evaluate(alert, context, catalog: catalog, on: connection)
                }
                // Only the period in force now is what quota enforcement needs to know.
                guard span.contains(Instant(now)) else { continue }
                evaluation.quotaStates.append(
                    QuotaState(
                        tenantID: tenant, asOf: now, periodStart: span.start.date, periodEnd: span.end.date,
                        subscription: subscription == nil ? .none : (trial ? .trialing : .active),
                        metrics: context.quotaMetrics))
            }
        }
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

        var quotaMetrics: [String: QuotaState.Metric] {
            var metrics: [String: QuotaState.Metric] = [:]
            for metric in Set(values.keys).union(plan?.terms.keys ?? [:].keys) {
                let terms = plan?.terms[metric]
                metrics[metric] = QuotaState.Metric(
                    used: decimal(values[metric] ?? .zero), quota: terms?.quota.map(decimal),
                    enforcement: terms?.enforcement == .hard ? .hard : .soft)
            }
            return metrics
        }

        func decimal(_ quantity: Quantity) -> Decimal { Decimal(string: quantity.description) ?? 0 }
    }

    private static func quotaCrossings(_ context: PeriodContext, on connection: isolated PostgresConnection) throws -> Int {
        guard let plan = context.plan else { return 0 }
        var written = 0
        for (metric, terms) in plan.terms.sorted(by: { $0.key < $1.key }) {
            guard let quota = terms.quota, !terms.isUnlimited, let value = context.values[metric], value > quota else { continue }
            let event = BillingEvent.QuotaExceeded(
                tenantID: context.tenant, occurredAt: context.now, metric: metric, value: value.description, quota: quota.description,
                enforcement: terms.enforcement.rawValue, periodStart: context.span.start.date, periodEnd: context.span.end.date)
            written += try Outbox.enqueue(.quotaExceeded(event), on: connection)
        }
        return written
    }

    private static func evaluate(
        _ alert: StoredAlert, _ context: PeriodContext, catalog: MetricCatalog, on connection: isolated PostgresConnection
    ) throws -> Int {
        let quota = context.plan?.terms[alert.rule.metric]?.quota
        var input = AlertInput(value: context.values[alert.rule.metric] ?? .zero, quota: quota)
        if case .anomaly = alert.rule.condition {
            let (lastHour, trailing) = try hourly(
                tenant: context.tenant, metric: alert.rule.metric, catalog: catalog, at: context.time, on: connection)
            input = AlertInput(value: input.value, quota: quota, lastHour: lastHour, trailingHours: trailing)
        }
        guard !AlertEvaluator.newlyFiring(rules: [alert.rule], input: input, firedThisPeriod: []).isEmpty else { return 0 }
        let fired = try connection.query(
            """
            INSERT INTO alert_firings (alert_id, period_start, threshold_key, value) VALUES ($1, $2, $3, $4)
            ON CONFLICT DO NOTHING
            """, [alert.id, context.span.start.date, alert.thresholdKey, Decimal(string: input.value.description) ?? 0])
        guard fired.affectedRows == 1 else { return 0 }
        let event = BillingEvent.AlertTriggered(
            tenantID: context.tenant, occurredAt: context.now, alertID: alert.id, alertKind: alert.kind, thresholdKey: alert.thresholdKey,
            metric: alert.rule.metric, value: input.value.description, threshold: alert.threshold, quota: quota?.description,
            periodStart: context.span.start.date, periodEnd: context.span.end.date, channels: alert.channels)
        return try Outbox.enqueue(.alertTriggered(event), on: connection)
    }

    /// The hour containing `time` (maybe in progress) and the 24 hours before it,
    /// zero-filled from the first hour with usage: the anomaly rule's input.
    private static func hourly(
        tenant: UUID, metric: String, catalog: MetricCatalog, at time: Date, on connection: isolated PostgresConnection
    ) throws -> (Quantity, [Quantity]) {
        let column: String
        switch catalog.aggregation(for: metric) {
        case .sum: column = "quantity_sum"
        case .max: column = "quantity_max"
        case .latest: column = "latest_quantity"
        case .count, .uniqueCount: column = "event_count"
        }
        let hour = Instant(microsecondsSinceEpoch: Instant(time).microsecondsSinceEpoch / 3_600_000_000 * 3_600_000_000)
        let rows = try connection.query(
            """
            SELECT ((extract(epoch FROM $3::timestamptz - hour) / 3600)::int), \(column)::text FROM usage_rollups
             WHERE tenant_id = $1 AND metric = $2 AND hour > $3::timestamptz - interval '25 hours' AND hour <= $3::timestamptz
            """, [tenant, metric, hour.date])
        var byAge: [Int: Quantity] = [:]
        for row in rows { byAge[try row.decode(0, as: Int.self)] = try Quantity(parsingTotal: row.text(1) ?? "0") }
        let oldest = byAge.keys.filter { $0 > 0 }.max() ?? 0
        let trailing = oldest == 0 ? [] : (1...oldest).reversed().map { byAge[$0] ?? .zero }
        return (byAge[0] ?? .zero, trailing)
    }
}

/// A tenant's alert as stored in `usage_alerts`.
struct StoredAlert: Sendable {
    let id: UUID
    let kind: String
    let rule: AlertRule
    let thresholdText: String?
    let channels: [String]

    /// The threshold as people read it: `10`, not the column's `10.0000` (the firing key
    /// keeps the stored text, so alerts fired before this never fire twice).
    var threshold: String? { thresholdText.map { text in (try? Quantity(parsingTotal: text))?.description ?? text } }

    /// What "each threshold it crosses" means for the firing record: the value or
    /// percentage itself, so editing a threshold re-arms the alert.
    var thresholdKey: String { "\(kind):\(thresholdText ?? "-")" }

    static func load(tenants: [UUID], on connection: isolated PostgresConnection) throws -> [UUID: [StoredAlert]] {
        let rows = try connection.query(
            """
            SELECT id, tenant_id, metric, kind, threshold_value::text, threshold_percentage::text, array_to_string(channels, ',')
              FROM usage_alerts WHERE tenant_id = ANY($1::uuid[]) ORDER BY created_at, id
            """, ["{" + tenants.map(\.uuidString).joined(separator: ",") + "}"])
        var alerts: [UUID: [StoredAlert]] = [:]
        for row in rows {
            let id = try row.decode(0, as: UUID.self)
            let kind = try row.decode(3, as: String.self)
            let condition: AlertRule.Condition
            let threshold: String?
            switch kind {
            case "threshold":
                threshold = row.text(4)
                condition = .threshold(try Quantity(parsingTotal: threshold ?? "0"))
            case "quota":
                threshold = row.text(5)
                condition = .quotaPercentage(Int(Decimal(string: threshold ?? "100").map { NSDecimalNumber(decimal: $0).intValue } ?? 100))
            default:
                threshold = nil
                condition = .anomaly(AnomalyRule())
            }
            let rule = AlertRule(id: id.uuidString, metric: try row.decode(2), condition: condition)
            alerts[try row.decode(1, as: UUID.self), default: []].append(
                StoredAlert(
                    id: id, kind: kind, rule: rule, thresholdText: threshold,
                    channels: (row.text(6) ?? "").split(separator: ",").map(String.init)))
        }
        return alerts
    }
}
