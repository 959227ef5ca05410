import BillingEngine
import CivilTime
import Foundation
import Hummingbird
import Invoicing
import PostgresClient
import TallyHTTP
import TallyStore

/// `GET /v1/usage?tenant_id&from&to` (SPEC §4): each metric's aggregation over the
/// events whose time is in `[from, to)` — from the rollups for whole hours and the
/// raw events at the edges, so it always equals aggregating the events — with the
/// quota of the plan in force at the end of the range beside it. Without `from` and `to`,
/// the current period from the tenant's `UsageStatement`.
struct UsageRoutes {
    let pool: PostgresPool

    func register(on router: Router<TallyRequestContext>) {
        router.get("v1/usage", use: usage)
    }

    @Sendable func usage(_ request: Request, context: TallyRequestContext) async throws -> UsageReport {
        let query = request.uri.queryParameters
        let tenant = try context.tenantInScope(query.get("tenant_id"))
        guard query.get("from") != nil || query.get("to") != nil else { return try await currentPeriod(of: tenant) }
        let from = try instant(query.get("from"), field: "from")
        let to = try instant(query.get("to"), field: "to")
        guard from < to else { throw APIError.invalid("to", "must be after from (the range is [from, to))") }
        let span = Period(start: from, end: to)
        return try await pool.withTransaction(isolation: .repeatableRead) { connection in
            let catalog = try MetricCatalogRecords.load(on: connection)
            let values = try UsageReader.values(tenant: tenant, over: span, catalog: catalog, on: connection)
            let plans = try SubscriptionRecords.plans(on: connection)
            let last = to.advanced(byMicroseconds: -1)
            let subscription = try SubscriptionRecords.subscriptions(of: [tenant], plans: plans, on: connection)[tenant]?
                .last { $0.covers(last) }
            let plan = subscription?.timeline.plan(at: last)
            return UsageReport(
                tenantID: tenant, from: from.date, to: to.date, plan: plan?.slug, subscriptionID: subscription?.id, period: nil,
                metrics: MetricStanding.standings(values: values, plan: plan).map { UsageReport.Metric($0, catalog: catalog) })
        }
    }

    /// Without `from` and `to`: the period open now (the billing period, the trial, or the
    /// calendar month when no subscription covers now), counted up to now.
    func currentPeriod(of tenant: UUID) async throws -> UsageReport {
        let now = Instant(TallyClock.now())
        let statement: UsageStatement?
        let catalog: MetricCatalog
        do {
            (statement, catalog) = try await pool.withTransaction(isolation: .repeatableRead) { connection in
                (try UsageStatement.load(tenant: tenant, asOf: now, on: connection), try MetricCatalogRecords.load(on: connection))
            }
        } catch let error as BillingError {
            throw APIError.unpriceable(error, what: "The usage so far")
        }
        guard let statement else { throw APIError(.notFound, code: "NOT_FOUND", message: "No such tenant.", field: "tenant_id") }
        return UsageReport(
            tenantID: tenant, from: statement.counted.start.date, to: statement.counted.end.date, plan: statement.plan?.slug,
            subscriptionID: statement.subscription?.id,
            period: .init(start: statement.period.start.date, end: statement.period.end.date, kind: statement.kind.rawValue),
            metrics: statement.metrics.map { UsageReport.Metric($0, catalog: catalog) })
    }

    private func instant(_ text: String?, field: String) throws -> Instant {
        guard let text else { throw APIError.invalid(field, "is required: an RFC 3339 time, e.g. 2026-11-01T00:00:00Z") }
        return Instant(try SubscriptionRoutes.instant(text, field: field))
    }
}

/// The answer of `GET /v1/usage`.
struct UsageReport: ResponseEncodable, Sendable {
    struct Metric: Encodable, Sendable {
        let metric: String
        let aggregation: String
        /// Exact decimal text.
        let value: String
        /// The plan's quota (nil: none); `unlimited` when it is the Unlimited marker or absent.
        let quota: String?
        let unlimited: Bool
        let enforcement: String?
        /// Whole percent of the quota used (floored); nil when unlimited.
        let percent: Int?

        init(_ standing: MetricStanding, catalog: MetricCatalog) {
            metric = standing.metric
            aggregation = catalog.aggregation(for: standing.metric).name
            value = standing.value.description
            quota = standing.quota?.description
            unlimited = standing.isUnlimited
            enforcement = standing.enforcement?.rawValue
            percent = standing.percent
        }
    }

    /// The period a report without `from`/`to` used.
    struct ReportedPeriod: Encodable, Sendable {
        let start: Date
        let end: Date
        /// `billing`, `trial` or `calendar_month` (no subscription: unbilled usage).
        let kind: String
    }

    let tenantID: UUID
    let from: Date
    let to: Date
    /// The plan in force at the end of the range; nil means the usage is unbilled.
    let plan: String?
    let subscriptionID: UUID?
    /// Present when the request named no range: the current period `[from, to)` was counted in.
    let period: ReportedPeriod?
    let metrics: [Metric]

    enum CodingKeys: String, CodingKey {
        case from, to, plan, metrics, period
        case tenantID = "tenant_id"
        case subscriptionID = "subscription_id"
    }
}

extension Aggregation {
    /// The stored name (`sum`, `count`, `max`, `latest`, `unique_count`).
    var name: String {
        switch self {
        case .sum: "sum"
        case .count: "count"
        case .max: "max"
        case .latest: "latest"
        case .uniqueCount: "unique_count"
        }
    }
}
