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
        try UsageStatement.load(tenant: tenant, asOf: Instant(at), on: connection).flatMap { UpcomingInvoice($0, asOf: at) }
    }
}

extension UpcomingInvoice {
    /// The upcoming invoice of `statement`'s open billing period (or of the next one, when
    /// the open one was invoiced early); nil outside one.
    public init?(_ statement: UsageStatement, asOf: Date) {
        guard let (period, plan, draft) = statement.upcoming, let subscription = statement.subscription else { return nil }
        self.init(
            tenantID: statement.tenantID, subscriptionID: subscription.id, plan: plan.slug, currency: statement.currency,
            periodStart: period.billed.start.date, periodEnd: period.billed.end.date, asOf: asOf,
            subtotalCents: draft.subtotal.value, taxRateBps: draft.taxBasisPoints, taxCents: draft.tax.value,
            totalCents: draft.total.value,
            lines: draft.lines.map { line in
                InvoiceView.Line(
                    kind: line.kind.rawValue, metric: line.metric, description: line.description, quantity: line.quantity.description,
                    unitPriceCents: line.unitPrice.description, amountCents: line.amount.value)
            })
    }
}
