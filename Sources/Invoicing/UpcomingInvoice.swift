import BillingEngine
import Foundation
import PostgresClient
import TallyStore

/// What the open period of a tenant's subscription would bill if it ended with the usage
/// counted so far (`GET /v1/invoices/upcoming`): the base fee of every plan segment, the
/// overage of the usage up to `at`, adjustments for late usage of invoiced periods that
/// the next invoice will carry, and tax — computed by the same engine as the real invoice.
public struct UpcomingInvoice: Codable, Sendable, Equatable {
    public let tenantID: UUID
    public let subscriptionID: UUID
    public let plan: String
    public let currency: String
    public let periodStart: Date
    public let periodEnd: Date
    /// The usage counted is that of `[period_start, as_of)`.
    public let asOf: Date
    public let subtotalCents: Int64
    public let taxRateBps: Int
    public let taxCents: Int64
    public let totalCents: Int64
    public let lines: [InvoiceView.Line]

    enum CodingKeys: String, CodingKey {
        case plan, currency, lines
        case tenantID = "tenant_id"
        case subscriptionID = "subscription_id"
        case periodStart = "period_start"
        case periodEnd = "period_end"
        case asOf = "as_of"
        case subtotalCents = "subtotal_cents"
        case taxRateBps = "tax_rate_bps"
        case taxCents = "tax_cents"
        case totalCents = "total_cents"
    }

    /// The tenant's upcoming invoice at `at`, or nil when no billable period is open then
    /// (no subscription, a trial, or an ended one).
    public static func compute(tenant: UUID, at: Date, on connection: isolated PostgresConnection) throws -> UpcomingInvoice? {
        guard let terms = try connection.query("SELECT tax_rate_bps, currency FROM tenants WHERE id = $1", [tenant]).first else {
            return nil
        }
        let plans = try SubscriptionRecords.plans(on: connection)
        let instant = Instant(at)
        guard let (stored, period) = try (SubscriptionRecords.subscriptions(of: [tenant], plans: plans, on: connection)[tenant] ?? [])
            .lazy.compactMap({ stored in stored.timeline.billingPeriod(containing: instant).map { (stored, $0) } }).first
        else { return nil }
        let catalog = try MetricCatalogRecords.load(on: connection)
        let counted = Period(start: period.billed.start, end: max(period.billed.start, min(instant, period.billed.end)))
        let values = counted.start < counted.end
            ? try UsageReader.values(tenant: tenant, over: counted, catalog: catalog, on: connection) : [:]
        let late = try InvoiceGenerator.lateUsage(stored, before: period.billed.start, tenant: tenant, catalog: catalog, on: connection)
        let draft = try InvoiceCalculator.invoice(
            for: period, of: stored.timeline, values: values, lateUsage: late, taxBasisPoints: try terms.decode(0))
        return UpcomingInvoice(
            tenantID: tenant, subscriptionID: stored.id, plan: stored.timeline.pricingPlan(of: period).slug, currency: try terms.decode(1),
            periodStart: period.billed.start.date, periodEnd: period.billed.end.date, asOf: at, subtotalCents: draft.subtotal.value,
            taxRateBps: draft.taxBasisPoints, taxCents: draft.tax.value, totalCents: draft.total.value,
            lines: draft.lines.map { line in
                InvoiceView.Line(
                    kind: line.kind.rawValue, metric: line.metric, description: line.description, quantity: line.quantity.description,
                    unitPriceCents: line.unitPrice.description, amountCents: line.amount.value)
            })
    }
}
