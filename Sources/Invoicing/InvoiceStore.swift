import Foundation
import PostgresClient
import TallyMessaging
import TallyStore

/// An issued invoice as SPEC §4 shows it.
public struct InvoiceView: Codable, Sendable, Equatable {
    public struct Line: Codable, Sendable, Equatable {
        public let kind: String
        public let metric: String?
        public let description: String
        /// Exact decimal text.
        public let quantity: String
        /// Cents per unit, exact decimal text (may be fractional).
        public let unitPriceCents: String
        public let amountCents: Int64

        public init(kind: String, metric: String?, description: String, quantity: String, unitPriceCents: String, amountCents: Int64) {
            self.kind = kind
            self.metric = metric
            self.description = description
            self.quantity = quantity
            self.unitPriceCents = unitPriceCents
            self.amountCents = amountCents
        }

        enum CodingKeys: String, CodingKey {
            case kind, metric, description, quantity
            case unitPriceCents = "unit_price_cents"
            case amountCents = "amount_cents"
        }
    }

    public let id: UUID
    public let number: String
    public let status: String
    public let kind: String
    public let tenantID: UUID
    public let subscriptionID: UUID?
    public let currency: String
    public let periodStart: Date
    public let periodEnd: Date
    public let subtotalCents: Int64
    public let taxRateBps: Int
    public let taxCents: Int64
    public let totalCents: Int64
    public let issuedAt: Date
    /// When payment is due: `issuedAt` plus the Invoicer's payment terms (`TALLY_PAYMENT_TERMS_DAYS`).
    public let dueAt: Date
    public var lines: [Line]
    /// Where the invoice stands in Stripe; nil for a tenant whose provider is not Stripe.
    public var stripe: StripeState?

    /// The Stripe push of one invoice.
    public struct StripeState: Codable, Sendable, Equatable {
        /// `pending` (waiting or retrying), `synced` or `failed` (see `error`).
        public let status: String
        public let invoiceID: String?
        /// The invoice's status in Stripe when pushed (`open` once finalized).
        public let invoiceStatus: String?
        public let attempts: Int
        public let error: String?

        enum CodingKeys: String, CodingKey {
            case status, attempts, error
            case invoiceID = "invoice_id"
            case invoiceStatus = "invoice_status"
        }

        /// What a tenant sees: the status, never Stripe's error text (it names Stripe
        /// ids and request paths of the operator's account).
        public var forTenant: StripeState {
            StripeState(
                status: status, invoiceID: invoiceID, invoiceStatus: invoiceStatus, attempts: attempts,
                error: error == nil ? nil : "the payment provider could not be updated; the operator has been told")
        }
    }

    /// The invoice as `principal` may see it: a tenant key gets no operator internals.
    public func visible(to principal: Principal) -> InvoiceView {
        guard case .tenant = principal else { return self }
        var copy = self
        copy.stripe = stripe?.forTenant
        return copy
    }

    /// An invoice as shown; without `dueAt` it is due after the default payment terms
    /// (`InvoiceGenerator.defaultPaymentTermsDays` after `issuedAt`).
    public init(
        id: UUID, number: String, status: String, kind: String, tenantID: UUID, subscriptionID: UUID?, currency: String,
        periodStart: Date, periodEnd: Date, subtotalCents: Int64, taxRateBps: Int, taxCents: Int64, totalCents: Int64,
        issuedAt: Date, dueAt: Date? = nil, lines: [Line]
    ) {
        self.id = id
        self.number = number
        self.status = status
        self.kind = kind
        self.tenantID = tenantID
        self.subscriptionID = subscriptionID
        self.currency = currency
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.subtotalCents = subtotalCents
        self.taxRateBps = taxRateBps
        self.taxCents = taxCents
        self.totalCents = totalCents
        self.issuedAt = issuedAt
        self.dueAt = dueAt ?? issuedAt.addingTimeInterval(TimeInterval(InvoiceGenerator.defaultPaymentTermsDays * 86_400))
        self.lines = lines
    }

    enum CodingKeys: String, CodingKey {
        case id, number, status, kind, currency, lines, stripe
        case tenantID = "tenant_id"
        case subscriptionID = "subscription_id"
        case periodStart = "period_start"
        case periodEnd = "period_end"
        case subtotalCents = "subtotal_cents"
        case taxRateBps = "tax_rate_bps"
        case taxCents = "tax_cents"
        case totalCents = "total_cents"
        case issuedAt = "issued_at"
        case dueAt = "due_at"
    }
}

/// Reads of issued invoices.
public struct InvoiceStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// The tenant's invoices, newest period first, with their lines.
    public func list(tenant: UUID) async throws -> [InvoiceView] {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            try InvoiceRecords.invoices(ofTenant: tenant, on: connection).map(InvoiceView.init)
        }
    }

    /// Which invoices a listing shows: one tenant's or every tenant's (the admin), in a
    /// status, issued in `[issuedFrom, issuedBefore)`.
    public struct Filter: Sendable {
        public var tenant: UUID?
        public var status: String?
        public var issuedFrom: Date?
        public var issuedBefore: Date?

        public init(tenant: UUID? = nil, status: String? = nil, issuedFrom: Date? = nil, issuedBefore: Date? = nil) {
            self.tenant = tenant
            self.status = status
            self.issuedFrom = issuedFrom
            self.issuedBefore = issuedBefore
        }
    }

    /// Up to `limit` invoices matching `filter`, newest period first (then number), after
    /// the invoice `after`; nil when `after` is not an invoice the filter's tenant may see.
    /// Keyset pagination on `(period_start, number)`, so a page costs the same however deep.
    public func page(_ filter: Filter, after: UUID?, limit: Int) async throws -> [InvoiceView]? {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            let records = InvoiceRecords.Filter(
                tenant: filter.tenant, status: filter.status, issuedFrom: filter.issuedFrom, issuedBefore: filter.issuedBefore)
            return try InvoiceRecords.page(records, after: after, limit: limit, on: connection)?.map(InvoiceView.init)
        }
    }

    /// One invoice with its lines, or nil.
    public func invoice(id: UUID) async throws -> InvoiceView? {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            try InvoiceRecords.invoice(id: id, on: connection).map(InvoiceView.init)
        }
    }

    /// One invoice with its lines, or nil, read in the caller's transaction.
    public static func invoice(id: UUID, on connection: isolated PostgresConnection) throws -> InvoiceView? {
        try InvoiceRecords.invoice(id: id, on: connection).map(InvoiceView.init)
    }

    /// The invoice named by its id or its number, with its lines, or nil.
    public static func invoice(idOrNumber: String, on connection: isolated PostgresConnection) throws -> InvoiceView? {
        try InvoiceRecords.invoice(idOrNumber: idOrNumber, on: connection).map(InvoiceView.init)
    }

    /// The `limit` newest invoices no notification was planned for yet, with their lines.
    public static func newestNotNotified(limit: Int, on connection: isolated PostgresConnection) throws -> [InvoiceView] {
        try InvoiceRecords.newestNotNotified(limit: limit, on: connection).map(InvoiceView.init)
    }
}

extension InvoiceView {
    /// The invoice as stored, shown.
    init(_ record: InvoiceRecords.Invoice) {
        self.init(
            id: record.id, number: record.number, status: record.status, kind: record.kind, tenantID: record.tenantID,
            subscriptionID: record.subscriptionID, currency: record.currency, periodStart: record.periodStart, periodEnd: record.periodEnd,
            subtotalCents: record.subtotalCents, taxRateBps: record.taxRateBps, taxCents: record.taxCents, totalCents: record.totalCents,
            issuedAt: record.issuedAt, dueAt: record.dueAt,
            lines: record.lines.map {
                Line(
                    kind: $0.kind, metric: $0.metric, description: $0.description, quantity: $0.quantity, unitPriceCents: $0.unitPriceCents,
                    amountCents: $0.amountCents)
            })
        stripe = record.stripe.map {
            StripeState(status: $0.status, invoiceID: $0.invoiceID, invoiceStatus: $0.invoiceStatus, attempts: $0.attempts, error: $0.error)
        }
    }
}

extension BillingEvent.InvoiceFinalized {
    /// The `invoice.finalized` event of an issued invoice, as the Invoicer writes it.
    public init(_ invoice: InvoiceView) {
        self.init(
            tenantID: invoice.tenantID, occurredAt: invoice.issuedAt, invoiceID: invoice.id, number: invoice.number, kind: invoice.kind,
            currency: invoice.currency, periodStart: invoice.periodStart, periodEnd: invoice.periodEnd, subtotalCents: invoice.subtotalCents,
            taxCents: invoice.taxCents, totalCents: invoice.totalCents, dueAt: invoice.dueAt)
    }
}
