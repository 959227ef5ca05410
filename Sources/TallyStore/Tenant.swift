import Foundation

/// A customer of a Tally user: who is billed, where invoices go and what tax applies.
public struct Tenant: Sendable, Equatable, Codable {
    public let id: UUID
    public let name: String
    public let billingEmail: String
    /// Tax in basis points (725 = 7.25%), applied to each invoice's subtotal (SPEC §2 rule 4).
    public let taxRateBps: Int
    public let currency: String
    public let createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, name, currency
        case billingEmail = "billing_email"
        case taxRateBps = "tax_rate_bps"
        case createdAt = "created_at"
    }

    public init(id: UUID, name: String, billingEmail: String, taxRateBps: Int, currency: String, createdAt: Date) {
        self.id = id
        self.name = name
        self.billingEmail = billingEmail
        self.taxRateBps = taxRateBps
        self.currency = currency
        self.createdAt = createdAt
    }
}

/// What a new tenant needs; validated before it reaches the database.
public struct NewTenant: Sendable, Equatable {
    public let name: String
    public let billingEmail: String
    public let taxRateBps: Int

    /// Checks every field and throws the first problem, naming the field.
    public init(name: String, billingEmail: String, taxRateBps: Int?) throws(TenantValidationError) {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(trimmed.count) else {
            throw TenantValidationError(field: "name", message: "must be 1 to 200 characters")
        }
        guard Self.looksLikeEmail(billingEmail) else {
            throw TenantValidationError(field: "billing_email", message: "must be an email address such as finance@example.com")
        }
        let rate = taxRateBps ?? 0
        guard (0...10_000).contains(rate) else {
            throw TenantValidationError(field: "tax_rate_bps", message: "must be 0 to 10000 basis points (725 = 7.25%)")
        }
        self.name = trimmed
        self.billingEmail = billingEmail
        self.taxRateBps = rate
    }

    static func looksLikeEmail(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard text.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains(".") else { return false }
        return !text.contains(where: \.isWhitespace) && !parts[1].hasPrefix(".") && !parts[1].hasSuffix(".")
    }
}

/// A tenant field that failed validation.
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
