import Crypto
import Foundation
import PostgresClient

/// The answers to requests sent with an `Idempotency-Key` (`idempotent_requests`, migration
/// 025), so a retried request is answered once more instead of done twice.
///
/// A request's first sending claims its key (`claim` → `.run(claim)`), runs, and either
/// keeps its answer (`complete`, a success) or gives the key back (`release`, a failure:
/// nothing was done, so a retry may run). Only the claim that holds the key completes or
/// releases it: a request taken over as abandoned cannot overwrite its successor's row.
/// Keys belong to a principal: no one sees another principal's answers by guessing keys.
///
/// The database holds neither a key nor an answer's body as sent: the key as an HMAC
/// under the server's secret, the body sealed (AES-GCM, the principal and key digest
/// authenticated with it) under a key derived (HKDF-SHA256) from the Idempotency-Key and
/// that secret. An answer can carry a secret shown once — a new tenant's API key, an
/// endpoint's signing secret — and a reader of the database alone cannot open it, however
/// guessable the client's key.
public struct IdempotentRequests: Sendable {
    /// What the first request with a key left.
    public enum Claim: Sendable, Equatable {
        /// The key is this request's: run it, then `complete` or `release` with this claim.
        case run(UUID)
        /// The key's request was answered: answer it again.
        case replay(KeptAnswer)
        /// The key's first request is still running.
        case running
        /// The key was first used with another request, at this instant.
        case usedForAnother(since: Date)
    }

    /// A success as it was answered.
    public struct KeptAnswer: Sendable, Equatable {
        public let status: Int
        public let contentType: String?
        public let location: String?
        public let body: Data

        public init(status: Int, contentType: String?, location: String?, body: Data) {
            self.status = status
            self.contentType = contentType
            self.location = location
            self.body = body
        }
    }

    /// Seconds a key and its answer are kept (Stripe keeps them 24 hours).
    public static let lifetime = 24 * 3_600
    /// Seconds after which a request still marked running is taken to have died with its
    /// process, and a retry runs it again.
    public static let abandonedAfter = 300

    let pool: PostgresPool
    /// The server's secret (the Billing API passes its admin token): rotating it forgets
    /// the kept answers, and a retry after the rotation runs again.
    let secretBytes: [UInt8]

    public init(pool: PostgresPool, secret: String) {
        self.pool = pool
        self.secretBytes = Array(SHA256.hash(data: Array("tally idempotency keys\n\(secret)".utf8)))
    }

    var secret: SymmetricKey { SymmetricKey(data: secretBytes) }

    /// The SHA-256 of what makes a request the same request: method, path and query, body.
    public static func fingerprint(method: String, target: String, body: some Sequence<UInt8>) -> Data {
        var hash = SHA256()
        hash.update(data: Array("\(method) \(target)\n".utf8))
        hash.update(data: Array(body))
        return Data(hash.finalize())
    }

    /// Claims `key` for the request of `fingerprint`, or says what its first request left.
    /// A key older than `lifetime`, or left running longer than `abandonedAfter` by the
    /// same request, is claimed anew.
    public func claim(principal: String, key: String, fingerprint: Data) async throws -> Claim {
        let digest = digest(key)
        let claim = UUID()
        // The row a concurrent first request inserted may be released between the two
        // statements: then claim again.
        for _ in 0..<3 {
            let claimed = try await pool.query(
                """
                INSERT INTO idempotent_requests AS r (principal, key_digest, fingerprint, claim_id) VALUES ($1, $2, $3, $6)
                ON CONFLICT (principal, key_digest) DO UPDATE
                   SET fingerprint = EXCLUDED.fingerprint, claim_id = EXCLUDED.claim_id, status = NULL, content_type = NULL,
                       location = NULL, sealed_body = NULL, created_at = now()
                 WHERE r.created_at < now() - make_interval(secs => $4::int)
                    OR (r.status IS NULL AND r.fingerprint = EXCLUDED.fingerprint
                        AND r.created_at < now() - make_interval(secs => $5::int))
                RETURNING 1
                """, [principal, digest, fingerprint, Self.lifetime, Self.abandonedAfter, claim])
            if !claimed.isEmpty { return .run(claim) }
            let rows = try await pool.query(
                """
                SELECT fingerprint, status, content_type, location, sealed_body, created_at
                  FROM idempotent_requests WHERE principal = $1 AND key_digest = $2
                """, [principal, digest])
            guard let row = rows.first else { continue }
            guard try row.decode(0, as: Data.self) == fingerprint else {
                return .usedForAnother(since: try row.decode(5, as: Date.self))
            }
            guard let status = try row.decode(1, as: Int?.self) else { return .running }
            return .replay(
                KeptAnswer(
                    status: status, contentType: try row.decode(2, as: String?.self), location: try row.decode(3, as: String?.self),
                    body: try open(try row.decode(4, as: Data?.self) ?? Data(), principal: principal, key: key)))
        }
        return .running
    }

    /// Keeps the success `answer` of `claim` for `key`'s retries, and forgets keys past
    /// their lifetime. False when the claim no longer holds the key (it was taken over).
    @discardableResult
    public func complete(principal: String, key: String, claim: UUID, answer: KeptAnswer) async throws -> Bool {
        let updated = try await pool.query(
            """
            UPDATE idempotent_requests SET status = $4, content_type = $5, location = $6, sealed_body = $7
             WHERE principal = $1 AND key_digest = $2 AND claim_id = $3 AND status IS NULL
            RETURNING 1
            """,
            [
                principal, digest(key), claim, answer.status, answer.contentType, answer.location,
                try seal(answer.body, principal: principal, key: key),
            ])
        try await pool.query(
            "DELETE FROM idempotent_requests WHERE created_at < now() - make_interval(secs => $1::int)", [Self.lifetime])
        return !updated.isEmpty
    }

    /// Gives `key` back after `claim`'s request failed: the next request with it runs.
    public func release(principal: String, key: String, claim: UUID) async throws {
        try await pool.query(
            "DELETE FROM idempotent_requests WHERE principal = $1 AND key_digest = $2 AND claim_id = $3 AND status IS NULL",
            [principal, digest(key), claim])
    }

    /// The key as stored: an HMAC under the server's secret.
    func digest(_ key: String) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Array(key.utf8), using: secret))
    }

    /// The key an answer is sealed with: the Idempotency-Key's and the server's.
    func sealingKey(principal: String, key: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(key.utf8) + secretBytes), salt: Array(principal.utf8),
            info: Array("tally idempotent answer".utf8), outputByteCount: 32)
    }

    /// What the seal authenticates besides the body: whose answer to which key it is.
    func sealed(for principal: String, key: String) -> Data {
        Data(principal.utf8) + digest(key)
    }

    func seal(_ body: Data, principal: String, key: String) throws -> Data {
        let box = try AES.GCM.seal(
            body, using: sealingKey(principal: principal, key: key), authenticating: sealed(for: principal, key: key))
        guard let combined = box.combined else { throw IdempotentAnswerUnreadable() }
        return combined
    }

    func open(_ sealed: Data, principal: String, key: String) throws -> Data {
        try AES.GCM.open(
            try AES.GCM.SealedBox(combined: sealed), using: sealingKey(principal: principal, key: key),
            authenticating: self.sealed(for: principal, key: key))
    }
}

/// A kept answer that does not open with its key (the row was changed by hand, or the
/// server's secret changed).
public struct IdempotentAnswerUnreadable: Error {}
