import Crypto
import Foundation
import PostgresClient

/// A signed-in dashboard session: who it acts for and the token its forms must carry.
public struct DashboardSession: Sendable, Equatable {
    public let principal: Principal
    /// Every state-changing form of the session posts this back (CSRF protection).
    public let csrfToken: String
}

/// Dashboard sign-ins in PostgreSQL (`dashboard_sessions`). The cookie holds a random
/// token; only its SHA-256 is stored. A session lasts `lifetime`, ends at sign-out, and
/// ends with the key (or admin token) it was opened with.
public struct DashboardSessionStore: Sendable {
    let pool: PostgresPool
    /// Seconds a session lasts after sign-in.
    let lifetime: Int

    public init(pool: PostgresPool, lifetime: Int = 12 * 3_600) {
        self.pool = pool
        self.lifetime = lifetime
    }

    /// Opens a session for the tenant owning `key`; nil when the key is unknown or revoked.
    /// Returns the cookie's token (shown to the browser only) and the session.
    public func signIn(tenantKey key: APIKey) async throws -> (token: String, session: DashboardSession)? {
        let (token, csrf) = (Self.randomToken(), Self.randomToken())
        let rows = try await pool.query(
            """
            INSERT INTO dashboard_sessions (token_sha256, tenant_id, api_key_id, csrf_token, expires_at)
            SELECT $1, tenant_id, id, $2, now() + make_interval(secs => $3::int)
              FROM api_keys WHERE key_sha256 = $4 AND revoked_at IS NULL
            RETURNING tenant_id
            """, [Self.digest(token), csrf, lifetime, key.sha256])
        guard let tenant = try rows.first?.decode(0, as: UUID.self) else { return nil }
        try await deleteExpired()
        return (token, DashboardSession(principal: .tenant(tenant), csrfToken: csrf))
    }

    /// Opens an admin session; the caller has checked `adminToken`.
    public func signIn(adminToken: String) async throws -> (token: String, session: DashboardSession) {
        let (token, csrf) = (Self.randomToken(), Self.randomToken())
        try await pool.query(
            """
            INSERT INTO dashboard_sessions (token_sha256, admin_token_sha256, csrf_token, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4::int))
            """, [Self.digest(token), Self.digest(adminToken), csrf, lifetime])
        try await deleteExpired()
        return (token, DashboardSession(principal: .admin, csrfToken: csrf))
    }

    /// The live session of cookie `token`: not expired, not signed out, its key not
    /// revoked, and for the admin the token it was opened with still the admin token.
    public func session(token: String, adminToken: String) async throws -> DashboardSession? {
        let rows = try await pool.query(
            """
            SELECT s.tenant_id, s.csrf_token FROM dashboard_sessions s
              LEFT JOIN api_keys k ON k.id = s.api_key_id
             WHERE s.token_sha256 = $1 AND s.signed_out_at IS NULL AND s.expires_at > now()
               AND (k.id IS NULL OR k.revoked_at IS NULL)
               AND (s.admin_token_sha256 IS NULL OR s.admin_token_sha256 = $2)
            """, [Self.digest(token), Self.digest(adminToken)])
        guard let row = rows.first else { return nil }
        let principal: Principal = try row.decode(0, as: UUID?.self).map { .tenant($0) } ?? .admin
        return DashboardSession(principal: principal, csrfToken: try row.decode(1))
    }

    /// Ends the session of cookie `token` for good: the cookie is refused from now on.
    public func signOut(token: String) async throws {
        try await pool.query(
            "UPDATE dashboard_sessions SET signed_out_at = now() WHERE token_sha256 = $1 AND signed_out_at IS NULL",
            [Self.digest(token)])
    }

    /// Sessions expired a day ago are of no use, even to explain a refusal.
    private func deleteExpired() async throws {
        try await pool.query("DELETE FROM dashboard_sessions WHERE expires_at < now() - interval '1 day'")
    }

    /// 256 random bits as 64 hex digits (valid in a cookie and a form field).
    public static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    static func digest(_ token: String) -> Data { Data(SHA256.hash(data: Data(token.utf8))) }
}
