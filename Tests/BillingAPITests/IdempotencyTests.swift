import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresClient
import TallyTestSupport
import Testing

@testable import BillingAPI
@testable import TallyStore

/// `Idempotency-Key` on the Billing API's writes (`IdempotencyMiddleware`,
/// `IdempotentRequests`), against the real PostgreSQL.
@Suite("Idempotency keys: a retried write is answered again, not done twice")
struct IdempotencyTests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    func headers(_ token: String, key: String) -> HTTPFields {
        var fields = bearer(token)
        fields[IdempotencyMiddleware.keyHeader] = key
        return fields
    }

    /// The store as the test application has it (its secret is the admin token).
    func requests(_ pool: PostgresPool) -> IdempotentRequests { IdempotentRequests(pool: pool, secret: adminToken) }

    /// Moves the principal's keys `seconds` into the past (as if claimed that long ago).
    func backdate(_ principal: String, by seconds: Int, on pool: PostgresPool) async throws {
        try await pool.query(
            "UPDATE idempotent_requests SET created_at = now() - make_interval(secs => $2::int) WHERE principal = $1", [principal, seconds])
    }

    func pool() throws -> PostgresPool {
        PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
    }

    @Test(
        "a tenant created twice with one key is one tenant: the retry gets the first answer, its API key included, which the database does not hold in the clear"
    )
    func retriedCreate() async throws {
        let pool = try pool()
        let key = UUID().uuidString
        let name = "Idempotent Co \(UUID().uuidString)"
        try await app().test(.router) { client in
            let body = #"{"name": "\#(name)", "billing_email": "ap@idempotent.test"}"#
            var answers: [(status: HTTPResponse.Status, replayed: String?, body: String)] = []
            for _ in 0..<3 {
                answers.append(
                    try await client.execute(
                        uri: "/v1/tenants", method: .post, headers: headers(adminToken, key: key), body: ByteBuffer(string: body)
                    ) { ($0.status, $0.headers[IdempotencyMiddleware.replayedHeader], String(buffer: $0.body)) })
            }
            #expect(answers.map(\.status) == [.created, .created, .created])
            #expect(answers.map(\.replayed) == [nil, "true", "true"])
            #expect(answers[1].body == answers[0].body && answers[2].body == answers[0].body)
            let first = try #require(try JSONSerialization.jsonObject(with: Data(answers[0].body.utf8)) as? [String: Any])
            let apiKey = try #require(first["api_key"] as? String)
            // The replayed key works: it is the tenant's.
            try await client.execute(uri: "/v1/tenants/\(try #require(first["id"] as? String))", method: .get, headers: bearer(apiKey)) {
                #expect($0.status == .ok)
            }
            let count = try await pool.query("SELECT count(*) FROM tenants WHERE name = $1", [name])
            #expect(try count.first?.decode(0, as: Int.self) == 1)
            // Kept sealed: neither the Idempotency-Key nor the API key is in the row.
            let rows = try await pool.query(
                "SELECT encode(key_digest, 'escape') || encode(sealed_body, 'escape') FROM idempotent_requests WHERE principal = 'admin' AND key_digest = $1",
                [requests(pool).digest(key)])
            let stored = try #require(try rows.first?.decode(0, as: String.self))
            #expect(!stored.contains(apiKey) && !stored.contains(key))
        }
        try await pool.query("DELETE FROM idempotent_requests WHERE principal = 'admin' AND key_digest = $1", [requests(pool).digest(key)])
        await pool.close()
    }

    @Test("the key with another body or path is refused; a failed request gives its key back; a malformed key is refused")
    func mismatchAndFailure() async throws {
        let pool = try pool()
        let key = UUID().uuidString
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            // A failure (here a 400) keeps nothing: the corrected request runs with the same key.
            try await client.execute(
                uri: "/v1/alerts", method: .post, headers: headers(tenant.key, key: key),
                body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold"}"#)
            ) { #expect($0.status == .badRequest) }
            let alert = #"{"metric": "api_calls", "kind": "threshold", "threshold_value": 500}"#
            let id = try await client.execute(
                uri: "/v1/alerts", method: .post, headers: headers(tenant.key, key: key), body: ByteBuffer(string: alert)
            ) { response in
                #expect(response.status == .created)
                #expect(response.headers[IdempotencyMiddleware.replayedHeader] == nil)
                return try json(response)["id"] as? String
            }
            for (uri, body) in [
                ("/v1/alerts", #"{"metric": "api_calls", "kind": "threshold", "threshold_value": 600}"#), ("/v1/webhook-endpoints", alert),
            ] {
                try await client.execute(uri: uri, method: .post, headers: headers(tenant.key, key: key), body: ByteBuffer(string: body)) {
                    response in
                    #expect(response.status == .badRequest)
                    let error = try #require(try json(response)["error"] as? [String: Any])
                    #expect(error["code"] as? String == "IDEMPOTENCY_KEY_REUSED")
                    #expect(error["field"] as? String == "Idempotency-Key")
                }
            }
            for bad in ["", "has space", String(repeating: "k", count: 256), "naïve"] {
                try await client.execute(
                    uri: "/v1/alerts", method: .post, headers: headers(tenant.key, key: bad), body: ByteBuffer(string: alert)
                ) { response in
                    #expect(response.status == .badRequest, "\(bad)")
                    let error = try json(response)["error"] as? [String: Any]
                    #expect(error?["field"] as? String == "Idempotency-Key", "\(bad)")
                }
            }
            // One alert: the first success only.
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(tenant.key)) { response in
                let data = try #require(try json(response)["data"] as? [[String: Any]])
                #expect(data.compactMap { $0["id"] as? String } == [try #require(id)])
            }
            try await pool.query("DELETE FROM idempotent_requests WHERE principal = $1", [tenant.id])
        }
        await pool.close()
    }

    @Test("keys are each principal's own: two tenants sending the same key each get their own alert")
    func keysPerPrincipal() async throws {
        let pool = try pool()
        let key = "retry-1"
        try await app().test(.router) { client in
            let (a, b) = (try await createTenant(client), try await createTenant(client))
            var ids: [String] = []
            for tenant in [a, b, a] {
                ids.append(
                    try await client.execute(
                        uri: "/v1/alerts", method: .post, headers: headers(tenant.key, key: key),
                        body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": 500}"#)
                    ) { response in
                        #expect(response.status == .created)
                        return try #require(try json(response)["id"] as? String)
                    })
            }
            #expect(ids[0] != ids[1])
            #expect(ids[2] == ids[0])
            // B's alert is B's.
            try await client.execute(uri: "/v1/alerts/\(ids[1])", method: .get, headers: bearer(a.key)) { #expect($0.status == .notFound) }
            try await pool.query("DELETE FROM idempotent_requests WHERE principal IN ($1, $2)", [a.id, b.id])
        }
        await pool.close()
    }

    @Test(
        "the store: a running key is 409-running to a retry; a kept answer opens only with its key and secret; abandoned and expired keys are claimed anew, and the old claim cannot touch the new one"
    )
    func store() async throws {
        let pool = try pool()
        let requests = requests(pool)
        let principal = UUID().uuidString.lowercased()
        let key = UUID().uuidString
        let print = IdempotentRequests.fingerprint(method: "POST", target: "/v1/alerts", body: Array("{}".utf8))
        let other = IdempotentRequests.fingerprint(method: "POST", target: "/v1/alerts", body: Array("{ }".utf8))
        guard case .run(let first) = try await requests.claim(principal: principal, key: key, fingerprint: print) else {
            Issue.record("a new key was not claimed")
            return
        }
        #expect(try await requests.claim(principal: principal, key: key, fingerprint: print) == .running)
        guard case .usedForAnother = try await requests.claim(principal: principal, key: key, fingerprint: other) else {
            Issue.record("another request took a running key")
            return
        }
        // A process that died with the request running: after `abandonedAfter`, a retry of
        // the same request runs it (not another request).
        try await backdate(principal, by: IdempotentRequests.abandonedAfter + 1, on: pool)
        guard case .usedForAnother = try await requests.claim(principal: principal, key: key, fingerprint: other) else {
            Issue.record("another request took an abandoned key")
            return
        }
        guard case .run(let second) = try await requests.claim(principal: principal, key: key, fingerprint: print) else {
            Issue.record("an abandoned key was not claimed again")
            return
        }
        // The first claim, finishing late, neither keeps its answer nor gives the key back.
        let answer = IdempotentRequests.KeptAnswer(status: 201, contentType: "application/json", location: nil, body: Data(#"{"secret": "s3"}"#.utf8))
        let late = IdempotentRequests.KeptAnswer(status: 201, contentType: "application/json", location: nil, body: Data(#"{"late": 1}"#.utf8))
        #expect(try await requests.complete(principal: principal, key: key, claim: first, answer: late) == false)
        try await requests.release(principal: principal, key: key, claim: first)
        #expect(try await requests.claim(principal: principal, key: key, fingerprint: print) == .running)
        #expect(try await requests.complete(principal: principal, key: key, claim: second, answer: answer))
        #expect(try await requests.claim(principal: principal, key: key, fingerprint: print) == .replay(answer))
        // Released only while running: a kept answer stays.
        try await requests.release(principal: principal, key: key, claim: second)
        #expect(try await requests.claim(principal: principal, key: key, fingerprint: print) == .replay(answer))
        let sealed = try #require(
            try await pool.query("SELECT sealed_body FROM idempotent_requests WHERE principal = $1", [principal]).first?.decode(0, as: Data.self))
        #expect(throws: (any Error).self) { try requests.open(sealed, principal: principal, key: key + "x") }
        #expect(throws: (any Error).self) { try requests.open(sealed, principal: "admin", key: key) }
        // The key alone does not open it: the server's secret goes into the sealing key.
        #expect(throws: (any Error).self) { try IdempotentRequests(pool: pool, secret: "another").open(sealed, principal: principal, key: key) }
        #expect(try requests.open(sealed, principal: principal, key: key) == answer.body)
        // After its lifetime, the key is anyone's again.
        try await backdate(principal, by: IdempotentRequests.lifetime + 1, on: pool)
        guard case .run = try await requests.claim(principal: principal, key: key, fingerprint: other) else {
            Issue.record("an expired key was not claimed anew")
            return
        }
        try await pool.query("DELETE FROM idempotent_requests WHERE principal = $1", [principal])
        await pool.close()
    }

    @Test("a retry while the first request runs is a 409 with Retry-After, and runs nothing")
    func whileRunning() async throws {
        let pool = try pool()
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let key = UUID().uuidString
            let body = #"{"metric": "api_calls", "kind": "anomaly"}"#
            // The first request holds the key, running (as another process would).
            let claim = try await requests(pool).claim(
                principal: tenant.id, key: key,
                fingerprint: IdempotentRequests.fingerprint(method: "POST", target: "/v1/alerts", body: Array(body.utf8)))
            guard case .run = claim else {
                Issue.record("the key was not claimed: \(claim)")
                return
            }
            try await client.execute(uri: "/v1/alerts", method: .post, headers: headers(tenant.key, key: key), body: ByteBuffer(string: body)) {
                response in
                #expect(response.status == .conflict)
                #expect(response.headers[.retryAfter] == "1")
                let error = try json(response)["error"] as? [String: Any]
                #expect(error?["code"] as? String == "IDEMPOTENT_REQUEST_RUNNING")
            }
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [Any]
                #expect(data?.isEmpty == true)
            }
            try await pool.query("DELETE FROM idempotent_requests WHERE principal = $1", [tenant.id])
        }
        await pool.close()
    }
}
