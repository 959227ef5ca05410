import Crypto
import Foundation

/// Turns a bearer token into a `Principal`: the admin token (compared in constant
/// time) or a tenant API key (looked up by digest, cached briefly so a busy
/// tenant does not cost a query per request).
///
/// A revoked key stops working once its cache entry expires (`cacheLifetime`).
public actor APIKeyAuthenticator {
    private let adminTokenDigest: SHA256Digest
    private let lookup: @Sendable (APIKey) async throws -> UUID?
    private let cacheLifetime: Duration
    private let clock = ContinuousClock()
    private var cache: [Data: (principal: Principal?, expires: ContinuousClock.Instant)] = [:]
    private let cacheLimit = 10_000

    /// `lookup` returns the tenant owning an unrevoked key, or nil.
    public init(
        adminToken: String,
        cacheLifetime: Duration = .seconds(5),
        lookup: @escaping @Sendable (APIKey) async throws -> UUID?
    ) {
        self.adminTokenDigest = SHA256.hash(data: Data(adminToken.utf8))
        self.cacheLifetime = cacheLifetime
        self.lookup = lookup
    }

    /// The principal `token` stands for, or nil when it is nobody's.
    public func principal(forToken token: String) async throws -> Principal? {
        let digest = SHA256.hash(data: Data(token.utf8))
        // Digests of equal length compared byte by byte without early exit.
        if digest == adminTokenDigest { return .admin }
        let key = Data(digest)
        let now = clock.now
        if let cached = cache[key], cached.expires > now { return cached.principal }
        let principal = try await lookup(APIKey(secret: token)).map(Principal.tenant)
        if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[key] = (principal, now.advanced(by: cacheLifetime))
        return principal
    }

    /// Forgets cached answers, e.g. right after a key is revoked through this process.
    public func forgetCachedKeys() {
        cache.removeAll()
    }
}
