import Crypto
import Foundation
import Synchronization

/// Turns a bearer token into a `Principal`: the admin token (compared in constant
/// time) or a tenant API key (looked up by digest, cached briefly so a busy
/// tenant does not cost a query per request).
///
/// A token that cannot be a key (`APIKey.isWellFormed`) is refused without a lookup.
/// The cache holds `cacheLimit` answers, unknown keys included, and evicts the least
/// recently used tenth when full, so a flood of random keys costs one lookup each
/// but never pushes out the keys tenants are using.
///
/// A revoked key stops working once its cache entry expires (`cacheLifetime`).
public actor APIKeyAuthenticator {
    private struct Entry {
        let principal: Principal?
        let expires: ContinuousClock.Instant
        var lastUsed: UInt64
    }

    private let adminTokenDigest: SHA256Digest
    private let lookup: @Sendable (APIKey) async throws -> UUID?
    private let cacheLifetime: Duration
    private let clock = ContinuousClock()
    private var cache: [Data: Entry] = [:]
    private var tick: UInt64 = 0
    private let cacheLimit: Int
    private let counts = Mutex(AuthenticationCounts())

    /// `lookup` returns the tenant owning an unrevoked key, or nil.
    public init(
        adminToken: String,
        cacheLifetime: Duration = .seconds(5),
        cacheLimit: Int = 10_000,
        lookup: @escaping @Sendable (APIKey) async throws -> UUID?
    ) {
        self.adminTokenDigest = SHA256.hash(data: Data(adminToken.utf8))
        self.cacheLifetime = cacheLifetime
        self.cacheLimit = max(10, cacheLimit)
        self.lookup = lookup
    }

    /// Refusals and lookups so far (readable from any context, for `/metrics`).
    public nonisolated var counters: AuthenticationCounts { counts.withLock { $0 } }

    /// Counts a request without a bearer token (answered 401 by the middleware).
    public nonisolated func recordMissingToken() {
        counts.withLock { $0.missingToken += 1 }
    }

    /// The principal `token` stands for, or nil when it is nobody's.
    public func principal(forToken token: String) async throws -> Principal? {
        let digest = SHA256.hash(data: Data(token.utf8))
        // Digests of equal length compared byte by byte without early exit.
        if digest == adminTokenDigest { return .admin }
        guard APIKey.isWellFormed(token) else {
            counts.withLock { $0.malformedToken += 1 }
            return nil
        }
        let key = Data(digest)
        let now = clock.now
        tick += 1
        if let cached = cache[key], cached.expires > now {
            cache[key]?.lastUsed = tick
            if cached.principal == nil { counts.withLock { $0.unknownKey += 1 } }
            return cached.principal
        }
        counts.withLock { $0.lookups += 1 }
        let principal = try await lookup(APIKey(secret: token)).map(Principal.tenant)
        if principal == nil { counts.withLock { $0.unknownKey += 1 } }
        if cache.count >= cacheLimit { evictLeastRecentlyUsed() }
        cache[key] = Entry(principal: principal, expires: now.advanced(by: cacheLifetime), lastUsed: tick)
        return principal
    }

    /// Drops the least recently used tenth of the cache (expired entries first).
    private func evictLeastRecentlyUsed() {
        let now = clock.now
        cache = cache.filter { $0.value.expires > now }
        guard cache.count >= cacheLimit else { return }
        let victims = cache.sorted { $0.value.lastUsed < $1.value.lastUsed }.prefix(cacheLimit / 10)
        for (key, _) in victims { cache[key] = nil }
    }

    /// Forgets cached answers, e.g. right after a key is revoked through this process.
    public func forgetCachedKeys() {
        cache.removeAll()
    }

    /// Whether `token`'s answer is cached (for tests of the eviction).
    func isCached(_ token: String) -> Bool {
        cache[Data(SHA256.hash(data: Data(token.utf8)))] != nil
    }
}

/// What the authenticator refused and looked up.
public struct AuthenticationCounts: Sendable, Equatable {
    /// Requests without a bearer token.
    public var missingToken = 0
    /// Tokens that cannot be a Tally key (refused without a lookup).
    public var malformedToken = 0
    /// Well-formed keys that belong to no tenant (or are revoked).
    public var unknownKey = 0
    /// Database lookups of keys not in the cache.
    public var lookups = 0

    /// Every 401 answered.
    public var refused: Int { missingToken + malformedToken + unknownKey }
}
