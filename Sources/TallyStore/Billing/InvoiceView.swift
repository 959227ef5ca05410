import Foundation

/// An issued invoice as SPEC §4 shows it, with its lines: what `InvoiceRecords` reads
/// back, what the billing API answers, the PDF draws and the Notifier sends.
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
    /// A negative total (late usage lowered a value already billed, with nothing else to
    /// bill against it): nothing is due; the amount is the tenant's credit. Its email and
    /// PDF call it a credit note (SPEC §2 step 6), not an amount due.
    public var isCredit: Bool { totalCents < 0 }
    /// Collected (Stripe reported the payment): its email and PDF say paid, not due.
    public var isPaid: Bool { status == "paid" && !isCredit }
    /// Who the invoice was issued to, as the tenant was then (migration 027): its PDF is
    /// billed to them, whatever the tenant is called or where it gets mail now. Nil only
    /// for an invoice not read from the database.
    public var billedTo: BilledTo? = nil

    public struct BilledTo: Sendable, Equatable {
        public let name: String
        public let email: String

        public init(name: String, email: String) {
            self.name = name
            self.email = email
        }
    }

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

    /// Payment terms when none are configured: due 30 days after issue.
    public static let defaultPaymentTermsDays = 30

    /// An invoice as shown; without `dueAt` it is due after the default payment terms
    /// (`defaultPaymentTermsDays` after `issuedAt`).
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
        self.dueAt = dueAt ?? issuedAt.addingTimeInterval(TimeInterval(Self.defaultPaymentTermsDays * 86_400))
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
