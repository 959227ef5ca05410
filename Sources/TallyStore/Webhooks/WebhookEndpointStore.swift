import Crypto
import Foundation
import PostgresClient

/// A tenant's webhook endpoint as the API shows it: never its signing secret.
public struct WebhookEndpoint: Sendable, Equatable, Codable {
    public let id: UUID
    public let tenantID: UUID
    public let url: String
    /// Subscribed billing event types; `*` means every type.
    public let events: [String]
    public let active: Bool
    public let description: String?
    public let createdAt: Date
    public let updatedAt: Date

    public init(
        id: UUID, tenantID: UUID, url: String, events: [String], active: Bool, description: String?, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.tenantID = tenantID
        self.url = url
        self.events = events
        self.active = active
        self.description = description
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, url, events, active, description
        case tenantID = "tenant_id"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    /// Whether deliveries of `eventType` go to this endpoint.
    public func subscribes(to eventType: String) -> Bool {
        active && (events.contains("*") || events.contains(eventType))
    }
}

/// An endpoint with what signing a delivery needs: the secret, and during the day after
/// a rotation the previous one too (receivers accept either while they switch).
public struct WebhookTarget: Sendable, Equatable {
    public let endpoint: WebhookEndpoint
    public let secret: String
    public let previousSecret: String?
}

/// A webhook signing secret: `whsec_` and 32 random bytes in hex. Shown once, at creation
/// or rotation; stored as is because every delivery is signed with it.
public struct WebhookSecret: Sendable, Equatable {
    public let value: String

    public static func generate() -> WebhookSecret {
        WebhookSecret(value: "whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() })
    }
}

/// `webhook_endpoints`: create, read, change, delete and rotate a tenant's endpoints;
/// every read and write names the tenant, so one tenant never reaches another's.
public struct WebhookEndpointStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    static let columns = "id, tenant_id, url, event_types, active, description, created_at, updated_at"

    /// Creates an endpoint; returns it with its new secret (shown this once).
    /// Nil when the tenant has `limit` endpoints already: counted and inserted under the
    /// tenant's row lock, so requests at once cannot each see room for one more.
    public func create(
        tenant: UUID, url: String, events: [String], description: String?, limit: Int
    ) async throws -> (WebhookEndpoint, WebhookSecret)? {
        let secret = WebhookSecret.generate()
        let endpoint = try await pool.withTransaction { connection -> WebhookEndpoint? in
            guard try !connection.query("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE", [tenant]).isEmpty else {
                throw UnknownTenant([tenant])
            }
            let count = try connection.query("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", [tenant])[0].decode(0, as: Int.self)
            guard count < limit else { return nil }
            let rows = try connection.query(
                """
                INSERT INTO webhook_endpoints (tenant_id, url, secret, event_types, description)
                VALUES ($1, $2, $3, $4::text[], $5) RETURNING \(Self.columns)
                """, [tenant, url, secret.value, PostgresTextArray(events), description])
            return try Self.endpoint(rows[0])
        }
        return endpoint.map { ($0, secret) }
    }

    /// The tenant's endpoints, oldest first.
    public func list(tenant: UUID) async throws -> [WebhookEndpoint] {
        try await pool.query(
            "SELECT \(Self.columns) FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id", [tenant]
        ).map(Self.endpoint)
    }

    /// One endpoint, or nil (also when it is another tenant's and `tenant` is given).
    public func endpoint(id: UUID, tenant: UUID? = nil) async throws -> WebhookEndpoint? {
        try await pool.query(
            "SELECT \(Self.columns) FROM webhook_endpoints WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)", [id, tenant]
        ).first.map(Self.endpoint)
    }

    /// Changes what is given; nil when there is no such endpoint of the tenant.
    public func update(
        id: UUID, tenant: UUID, url: String?, events: [String]?, active: Bool?, description: String?
    ) async throws -> WebhookEndpoint? {
        try await pool.query(
            """
            UPDATE webhook_endpoints SET url = coalesce($3, url), event_types = coalesce($4::text[], event_types),
                   active = coalesce($5, active), description = coalesce($6, description), updated_at = now()
             WHERE id = $1 AND tenant_id = $2 RETURNING \(Self.columns)
            """, [id, tenant, url, events.map(PostgresTextArray.init), active, description]
        ).first.map(Self.endpoint)
    }

    /// Deletes the endpoint; false when there was none of the tenant's.
    public func delete(id: UUID, tenant: UUID) async throws -> Bool {
        try await pool.query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2", [id, tenant]).affectedRows == 1
    }

    /// A new secret; the old one keeps signing (beside the new) for `overlapSeconds`.
    public func rotateSecret(id: UUID, tenant: UUID, overlapSeconds: Int = 86_400) async throws -> WebhookSecret? {
        let secret = WebhookSecret.generate()
        let rows = try await pool.query(
            """
            UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,
                   previous_secret_until = now() + make_interval(secs => $4), updated_at = now()
             WHERE id = $1 AND tenant_id = $2 RETURNING id
            """, [id, tenant, secret.value, overlapSeconds])
        return rows.isEmpty ? nil : secret
    }

    /// The tenant's active endpoints subscribed to `eventType`, with their secrets.
    public static func targets(
        tenant: UUID, eventType: String, on connection: isolated PostgresConnection
    ) throws -> [WebhookTarget] {
        try connection.query(
            """
            SELECT \(columns), secret, CASE WHEN previous_secret_until > now() THEN previous_secret END
              FROM webhook_endpoints
             WHERE tenant_id = $1 AND active AND ($2 = ANY(event_types) OR '*' = ANY(event_types))
             ORDER BY created_at, id
            """, [tenant, eventType]
        ).map { row in
            WebhookTarget(endpoint: try endpoint(row), secret: try row.decode(8), previousSecret: row.text(9))
        }
    }

    static func endpoint(_ row: PostgresRow) throws -> WebhookEndpoint {
        WebhookEndpoint(
            id: try row.decode(0), tenantID: try row.decode(1), url: try row.decode(2), events: PostgresTextArray.parse(row.text(3) ?? "{}"),
            active: try row.decode(4), description: row.text(5), createdAt: try row.decode(6), updatedAt: try row.decode(7))
    }
}
