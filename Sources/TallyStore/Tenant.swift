import Foundation

/// A customer of a Tally user: who is billed, where invoices go and what tax applies.
public struct Tenant: Sendable, Equatable, Codable {
    public let id: UUID
    public let name: String
    public let billingEmail: String
    /// Tax in basis points (725 = 7.25%), applied to each invoice's subtotal (SPEC §2 rule 4).
    public let taxRateBps: Int
    public let currency: String
    /// Where the tenant's invoices are also sent for collection: `stripe` or `none`.
    public let paymentProvider: PaymentProvider
    public let createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, name, currency
        case billingEmail = "billing_email"
        case taxRateBps = "tax_rate_bps"
        case paymentProvider = "payment_provider"
        case createdAt = "created_at"
    }

    public init(
        id: UUID, name: String, billingEmail: String, taxRateBps: Int, currency: String, paymentProvider: PaymentProvider = .none,
        createdAt: Date
    ) {
        self.id = id
        self.name = name
        self.billingEmail = billingEmail
        self.taxRateBps = taxRateBps
        self.currency = currency
        self.paymentProvider = paymentProvider
        self.createdAt = createdAt
    }
}

/// The payment service a tenant's invoices are pushed to (Stripe when `STRIPE_API_KEY`
/// is set on the Invoicer), or none: the invoice is only emailed.
public enum PaymentProvider: String, Sendable, Codable, CaseIterable {
    case none
    case stripe
}

/// What a new tenant needs; validated before it reaches the database.
public struct NewTenant: Sendable, Equatable {
    public let name: String
    public let billingEmail: String
    public let taxRateBps: Int
    public let paymentProvider: PaymentProvider

    /// Checks every field and throws the first problem, naming the field.
    public init(
        name: String, billingEmail: String, taxRateBps: Int?, paymentProvider: String? = nil,
        defaultProvider: PaymentProvider = .none
    ) throws(TenantValidationError) {
        let trimmed = try Self.checkedName(name)
        try Self.checkEmail(billingEmail)
        let rate = taxRateBps ?? 0
        try Self.checkTaxRate(rate)
        guard let provider = paymentProvider.map(PaymentProvider.init(rawValue:)) ?? defaultProvider else {
            throw TenantValidationError(field: "payment_provider", message: "must be \"stripe\" or \"none\"")
        }
        self.name = trimmed
        self.billingEmail = billingEmail
        self.taxRateBps = rate
        self.paymentProvider = provider
    }

    static func checkedName(_ name: String) throws(TenantValidationError) -> String {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(trimmed.unicodeScalars.count) else {  // as PostgreSQL counts (code points)
            throw TenantValidationError(field: "name", message: "must be 1 to 200 characters")
        }
        return trimmed
    }

    static func checkEmail(_ billingEmail: String) throws(TenantValidationError) {
        guard Self.looksLikeEmail(billingEmail) else {
            throw TenantValidationError(
                field: "billing_email", message: "must be an email address such as finance@example.com, in plain ASCII (one address, no display name)"
            )
        }
    }

    static func checkTaxRate(_ rate: Int) throws(TenantValidationError) {
        guard (0...10_000).contains(rate) else {
            throw TenantValidationError(field: "tax_rate_bps", message: "must be 0 to 10000 basis points (725 = 7.25%)")
        }
    }

    /// An address the Notifier can send to: `local@domain.tld` in printable ASCII without
    /// the characters that make a mailbox list (`<>()[],;:\"`), as `MailMessage` checks
    /// before sending. Looser, `<a@b.com>,<c@d` or `ü@exämple.com` were stored and every
    /// invoice email to the tenant was parked.
    /// Also as mail servers take it (RFC 5321): a local part of at most 64 characters and
    /// domain labels of 1 to 63, no empty part between dots (`a..b@x..com` was refused by
    /// the server with 553 and every invoice email parked).
    public static func looksLikeEmail(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard text.utf8.count <= 254, parts.count == 2, (1...64).contains(parts[0].utf8.count), parts[1].contains(".") else { return false }
        let plain = text.unicodeScalars.allSatisfy { (0x21...0x7E).contains($0.value) && !"<>()[],;:\\\"".unicodeScalars.contains($0) }
        let local = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        let labels = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        return plain && local.allSatisfy { !$0.isEmpty } && labels.allSatisfy { (1...63).contains($0.utf8.count) }
    }
}

/// A change to a tenant (`PATCH /v1/tenants/{id}`): each field given is checked as at
/// creation; the others stay as they are.
public struct TenantChange: Sendable, Equatable {
    public let name: String?
    public let billingEmail: String?
    public let taxRateBps: Int?

    public init(name: String?, billingEmail: String?, taxRateBps: Int?) throws(TenantValidationError) {
        self.name = try name.map { name throws(TenantValidationError) in try NewTenant.checkedName(name) }
        if let billingEmail { try NewTenant.checkEmail(billingEmail) }
        if let taxRateBps { try NewTenant.checkTaxRate(taxRateBps) }
        self.billingEmail = billingEmail
        self.taxRateBps = taxRateBps
    }
}

/// A tenant field that failed validation.
/// Tenants a write or a billing run names do not exist (an admin's `tenant_id`, a
/// mistyped `--tenant`): answered 404 naming the field, not left to a foreign key (a 500)
/// or planned as an empty run.
public struct UnknownTenant: Error, Sendable {
    public let ids: [UUID]

    public init(_ ids: [UUID]) {
        self.ids = ids
    }
}

public struct TenantValidationError: Error, Equatable {
    public let field: String
    public let message: String
}

/// An API key as listed: never the secret, only what tells keys apart.
public struct APIKeySummary: Sendable, Equatable, Codable {
    public let id: UUID
    public let prefix: String
    public let createdAt: Date
    public let revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, prefix
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }

    public init(id: UUID, prefix: String, createdAt: Date, revokedAt: Date?) {
        self.id = id
        self.prefix = prefix
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// A payment method as the provider reported it: its id there, brand, last four digits
/// and expiry. Card numbers never reach Tally (SPEC §6).
public struct PaymentMethodSummary: Sendable, Equatable, Codable {
    public let provider: String
    public let providerID: String
    public let brand: String?
    public let last4: String?
    public let expMonth: Int?
    public let expYear: Int?
    public let isDefault: Bool
    public let updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case provider, brand, last4
        case providerID = "provider_id"
        case expMonth = "exp_month"
        case expYear = "exp_year"
        case isDefault = "is_default"
        case updatedAt = "updated_at"
    }

    public init(
        provider: String, providerID: String, brand: String?, last4: String?, expMonth: Int?, expYear: Int?, isDefault: Bool,
        updatedAt: Date
    ) {
        self.provider = provider
        self.providerID = providerID
        self.brand = brand
        self.last4 = last4
        self.expMonth = expMonth
        self.expYear = expYear
        self.isDefault = isDefault
        self.updatedAt = updatedAt
    }
}
