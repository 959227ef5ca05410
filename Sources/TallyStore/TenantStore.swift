import Foundation
import PostgresClient

/// Tenants and their API keys in PostgreSQL.
public struct TenantStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Creates the tenant and its first API key in one transaction; the key is returned once.
    public func create(_ tenant: NewTenant) async throws -> (Tenant, APIKey) {
        let key = APIKey.generate()
        let created = try await pool.withTransaction { connection in
            let row = try connection.query(
                """
                INSERT INTO tenants (name, billing_email, tax_rate_bps, payment_provider)
                VALUES ($1, $2, $3, $4)
                RETURNING \(Self.tenantColumns)
                """, [tenant.name, tenant.billingEmail, tenant.taxRateBps, tenant.paymentProvider.rawValue])[0]
            let created = try Self.tenant(from: row)
            try connection.query(
                "INSERT INTO api_keys (tenant_id, key_prefix, key_sha256) VALUES ($1, $2, $3)",
                [created.id, key.prefix, key.sha256])
            return created
        }
        return (created, key)
    }

    /// Applies `change` to tenant `id`; the tenant as it is now, or nil when there is none.
    /// Invoices issued keep the name, address and tax they were issued with; the open
    /// period's invoice takes the new ones when it is issued.
    public func update(id: UUID, _ change: TenantChange) async throws -> Tenant? {
        try await pool.query(
            """
            UPDATE tenants SET name = coalesce($2, name), billing_email = coalesce($3, billing_email),
                               tax_rate_bps = coalesce($4, tax_rate_bps)
             WHERE id = $1
            RETURNING \(Self.tenantColumns)
            """, [id, change.name, change.billingEmail, change.taxRateBps]
        ).first.map(Self.tenant(from:))
    }

    /// The tenant with `id`, or nil.
    public func tenant(id: UUID) async throws -> Tenant? {
        let rows = try await pool.query("SELECT \(Self.tenantColumns) FROM tenants WHERE id = $1", [id])
        return try rows.first.map(Self.tenant(from:))
    }

    /// Tenants with a subscription open at `at` (trial included), by name: the newest
    /// `limit` of them, and how many there are (finance's page).
    public func withOpenSubscriptions(at: Date, limit: Int) async throws -> (count: Int, tenants: [(id: UUID, name: String)]) {
        let open = """
            EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = tenants.id AND s.started_at <= $1
                    AND (s.ends_at IS NULL OR s.ends_at > $1))
            """
        let count = try await pool.query("SELECT count(*) FROM tenants WHERE \(open)", [at])[0].decode(0, as: Int64.self)
        let rows = try await pool.query("SELECT id, name FROM tenants WHERE \(open) ORDER BY created_at DESC, id LIMIT $2", [at, limit])
        return (Int(count), try rows.map { (try $0.decode(0, as: UUID.self), try $0.decode(1, as: String.self)) })
    }

    /// The tenant, or nil, read on `connection` (a worker's own).
    public static func tenant(id: UUID, on connection: PostgresConnection) async throws -> Tenant? {
        try await connection.query("SELECT \(tenantColumns) FROM tenants WHERE id = $1", [id]).first.map(tenant(from:))
    }

    /// Whether tenant `id` exists, read inside the caller's transaction.
    public static func exists(_ id: UUID, on connection: isolated PostgresConnection) throws -> Bool {
        try !connection.query("SELECT 1 FROM tenants WHERE id = $1", [id]).isEmpty
    }

    /// The tenant owning `key`, when the key exists and is not revoked.
    public func tenantOwning(_ key: APIKey) async throws -> UUID? {
        let rows = try await pool.query(
            "SELECT tenant_id FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL", [key.sha256])
        return try rows.first?.decode(0, as: UUID.self)
    }

    /// Issues a new key for the tenant (rotation), optionally revoking all others at once.
    public func issueKey(tenant: UUID, revokingOthers: Bool) async throws -> (APIKeySummary, APIKey) {
        let key = APIKey.generate()
        let summary = try await pool.withTransaction { connection in
            if revokingOthers {
                try connection.query(
                    "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL", [tenant])
            }
            let row = try connection.query(
                """
                INSERT INTO api_keys (tenant_id, key_prefix, key_sha256) VALUES ($1, $2, $3)
                RETURNING \(Self.keyColumns)
                """, [tenant, key.prefix, key.sha256])[0]
            return try Self.keySummary(from: row)
        }
        return (summary, key)
    }

    /// Every key of the tenant, newest first; secrets are never readable.
    public func keys(tenant: UUID) async throws -> [APIKeySummary] {
        let rows = try await pool.query(
            "SELECT \(Self.keyColumns) FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id", [tenant])
        return try rows.map(Self.keySummary(from:))
    }

    /// The tenant's payment methods, the default first.
    public func paymentMethods(tenant: UUID) async throws -> [PaymentMethodSummary] {
        let rows = try await pool.query(
            """
            SELECT provider, provider_id, brand, last4::text, exp_month::int, exp_year::int, is_default, updated_at
              FROM payment_methods WHERE tenant_id = $1 ORDER BY is_default DESC, created_at, provider_id
            """, [tenant])
        return try rows.map { row in
            PaymentMethodSummary(
                provider: try row.decode(0), providerID: try row.decode(1), brand: row.text(2), last4: row.text(3),
                expMonth: row.text(4).flatMap { Int($0) }, expYear: row.text(5).flatMap { Int($0) }, isDefault: try row.decode(6),
                updatedAt: try row.decode(7))
        }
    }

    /// Revokes one key of the tenant; false when the tenant has no such unrevoked key.
    public func revokeKey(id: UUID, tenant: UUID) async throws -> Bool {
        let rows = try await pool.query(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
            [id, tenant])
        return rows.affectedRows == 1
    }

    static let tenantColumns = "id, name, billing_email, tax_rate_bps, currency, created_at, payment_provider"
    static let keyColumns = "id, key_prefix, created_at, revoked_at"

    static func tenant(from row: PostgresRow) throws -> Tenant {
        Tenant(
            id: try row.decode(0), name: try row.decode(1), billingEmail: try row.decode(2),
            taxRateBps: try row.decode(3), currency: try row.decode(4),
            paymentProvider: PaymentProvider(rawValue: try row.decode(6, as: String.self)) ?? .none, createdAt: try row.decode(5))
    }

    static func keySummary(from row: PostgresRow) throws -> APIKeySummary {
        APIKeySummary(
            id: try row.decode(0), prefix: try row.decode(1), createdAt: try row.decode(2),
            revokedAt: try row.decode(3, as: Date?.self))
    }
}
