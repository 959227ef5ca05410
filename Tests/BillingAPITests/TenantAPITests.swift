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

/// The billing API's tenant endpoints, served by the same builder as production,
/// over the real PostgreSQL that `./ops/local.sh up` starts.
@Suite("Billing API: tenants and API keys")
struct TenantAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    func createTenant(_ client: some TestClientProtocol, name: String = "Acme") async throws -> (id: String, key: String) {
        let body = #"{"name": "\#(name)", "billing_email": "finance@acme.test", "tax_rate_bps": 725}"#
        return try await client.execute(
            uri: "/v1/tenants", method: .post, headers: bearer(adminToken), body: ByteBuffer(string: body)
        ) { response in
            #expect(response.status == .created)
            // The key is shown this once: no cache may keep the answer.
            #expect(response.headers[.cacheControl] == "no-store")
            let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            let id = try #require(json?["id"] as? String)
            let key = try #require(json?["api_key"] as? String)
            #expect(json?["tax_rate_bps"] as? Int == 725)
            return (id, key)
        }
    }

    func errorCode(_ response: TestResponse) throws -> (code: String?, field: String?) {
        let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        let error = json?["error"] as? [String: Any]
        return (error?["code"] as? String, error?["field"] as? String)
    }

    @Test("the admin creates a tenant; its key then authenticates as that tenant")
    func createAndAuthenticate() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            #expect(tenant.key.hasPrefix("tally_"))
            try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .ok)
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(json?["id"] as? String == tenant.id)
                #expect(json?["billing_email"] as? String == "finance@acme.test")
                #expect(json?["api_key"] == nil)
                #expect(response.headers[HTTPField.Name("x-request-id")!] != nil)
            }
        }
    }

    @Test("a missing or wrong key is 401 with the JSON error shape")
    func unauthenticated() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/tenants", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .unauthorized)
                let problem = try errorCode(response)
                #expect(problem.code == "UNAUTHENTICATED")
            }
            try await client.execute(
                uri: "/v1/tenants/\(UUID())", method: .get, headers: bearer("tally_" + String(repeating: "0", count: 64))
            ) { response in
                #expect(response.status == .unauthorized)
                let problem = try errorCode(response)
                #expect(problem.code == "INVALID_API_KEY")
            }
            try await client.execute(uri: "/healthz", method: .get) { response in #expect(response.status == .ok) }
            try await client.execute(uri: "/readyz", method: .get) { response in #expect(response.status == .ok) }
        }
    }

    @Test("a tenant key cannot create tenants (403) nor see another tenant (404)")
    func tenantIsolation() async throws {
        try await app().test(.router) { client in
            let first = try await createTenant(client, name: "First")
            let second = try await createTenant(client, name: "Second")
            let body = ByteBuffer(string: #"{"name": "Sneaky", "billing_email": "x@y.test"}"#)
            try await client.execute(uri: "/v1/tenants", method: .post, headers: bearer(first.key), body: body) { response in
                #expect(response.status == .forbidden)
                let problem = try errorCode(response)
                #expect(problem.code == "FORBIDDEN")
            }
            try await client.execute(uri: "/v1/tenants/\(second.id)", method: .get, headers: bearer(first.key)) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/v1/tenants/\(second.id)/api-keys", method: .post, headers: bearer(first.key)) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test("invalid tenant fields are 400 naming the field")
    func validation() async throws {
        try await app().test(.router) { client in
            let cases: [(String, String)] = [
                (#"{"billing_email": "a@b.test"}"#, "name"),
                (#"{"name": "A", "billing_email": "not-an-email"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "a@b.test", "tax_rate_bps": 10001}"#, "tax_rate_bps"),
                (#"{"name": "A", "billing_email": "a@b.test", "tax_rate_bps": "7"}"#, "tax_rate_bps"),
                (#"{"name": "A", "billing_email": "a@b.test", "payment_provider": "paypal"}"#, "payment_provider"),
                // 201 code points in one Character: over the 200 PostgreSQL counts (it was a 500).
                (#"{"name": "e\#(String(repeating: "\u{301}", count: 200))", "billing_email": "a@b.test"}"#, "name"),
                (#"{"name": "#, "name"),  // cut off in the name's value
                (#"{"name": "A", "billing_email": "a@b.test"} x"#, "body"),
                // A field the request does not take: refused, not ignored.
                (#"{"name": "A", "billing_email": "a@b.test", "tax_rate": 725}"#, "tax_rate"),
                (#"{"name": "A", "billing_email": "a@b.test", "colour": "red"}"#, "colour"),
                // A key sent twice: which name or tax rate the tenant gets is not a decoder's guess.
                (#"{"name": "A", "billing_email": "a@b.test", "tax_rate_bps": 0, "tax_rate_bps": 2000}"#, "tax_rate_bps"),
                (#"{"name": "A", "billing_email": "a@b.test", "metadata": {"k": 1.}}"#, "metadata.k"),
                // A number that does not fit its field: named, not "the body is not valid JSON".
                (#"{"name": "A", "billing_email": "a@b.test", "tax_rate_bps": 8.25}"#, "tax_rate_bps"),
                (#"{"name": "A", "billing_email": "a@b.test", "tax_rate_bps": 9223372036854775808}"#, "tax_rate_bps"),
                ("[]", "body"),
                ("null", "body"),
                // Addresses the Notifier cannot send to (every invoice email was parked).
                (#"{"name": "A", "billing_email": "<a@b.test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "a@b.test>,<root.x"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "\"a\\\"b\"@b.test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "ü@exämple.test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "a@ex,ample.test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "a..b@x.test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "a@x..test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "\#(String(repeating: "a", count: 65))@x.test"}"#, "billing_email"),
                (#"{"name": "A", "billing_email": "a@\#(String(repeating: "x", count: 64)).test"}"#, "billing_email"),
                // A NUL: the name was stored cut at it, the address checked whole and stored cut.
                (#"{"name": "Acme\u0000 Hidden", "billing_email": "a@b.test"}"#, "name"),
                (#"{"name": "A", "billing_email": "x@evil.test\u0000.example.com"}"#, "billing_email"),
                (#"{"name": "\u0000A", "billing_email": "a@b.test"}"#, "name"),
            ]
            for (body, field) in cases {
                try await client.execute(
                    uri: "/v1/tenants", method: .post, headers: bearer(adminToken), body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .badRequest, "\(body)")
                    let problem = try errorCode(response)
                    #expect(problem.field == field, "\(body)")
                }
            }
            try await client.execute(
                uri: "/v1/tenants", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"name": "A", "billing_email": "a@b.test", "tax_rate": 725}"#)
            ) { response in
                let message = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                let text = (message?["error"] as? [String: Any])?["message"] as? String ?? ""
                #expect(text.hasPrefix("is not a field of this request (did you mean tax_rate_bps?)"), "\(text)")
                #expect(text.hasSuffix("its fields are name, billing_email, tax_rate_bps, payment_provider"), "\(text)")
            }
            try await client.execute(uri: "/v1/tenants", method: .post, headers: bearer(adminToken), body: ByteBuffer(string: " \n")) {
                response in
                let message = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(response.status == .badRequest)
                #expect((message?["error"] as? [String: Any])?["message"] as? String == "is empty: send a JSON object with the request's fields")
            }
            let huge = ByteBuffer(string: #"{"name": ""# + String(repeating: "x", count: 2 << 20) + #""}"#)
            try await client.execute(uri: "/v1/tenants", method: .post, headers: bearer(adminToken), body: huge) { response in
                #expect(response.status == .contentTooLarge)
            }
            // The same with an Idempotency-Key (collected by its middleware), and a sign-in form
            // that anyone may post: 413, not a 500 logged as an error.
            var keyed = bearer(adminToken)
            keyed[HTTPField.Name("Idempotency-Key")!] = UUID().uuidString
            try await client.execute(uri: "/v1/tenants", method: .post, headers: keyed, body: huge) { response in
                #expect(response.status == .contentTooLarge)
                let body = try json(response)
                #expect(body["error"] != nil)
            }
            try await client.execute(
                uri: "/dashboard/sign-in", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"], body: huge
            ) { response in
                #expect(response.status == .contentTooLarge)
            }
        }
    }

    @Test("a tenant is changed: the admin changes any field, a tenant key its own name and email but not its tax rate; fields checked as at creation")
    func update() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, taxRateBps: 725)
            let other = try await createTenant(client)
            func patch(_ id: String, _ key: String, _ body: String) async throws -> (HTTPResponse.Status, [String: Any]) {
                try await client.execute(uri: "/v1/tenants/\(id)", method: .patch, headers: bearer(key), body: ByteBuffer(string: body)) {
                    ($0.status, try json($0))
                }
            }
            // Finance's address fixed by the admin: the next invoice email goes there.
            var (status, body) = try await patch(tenant.id, adminToken, #"{"billing_email": "ap-new@tenant.test", "tax_rate_bps": 800}"#)
            #expect(status == .ok, "\(body)")
            #expect(
                body["billing_email"] as? String == "ap-new@tenant.test" && body["tax_rate_bps"] as? Int == 800
                    && body["name"] as? String == "Test Co")
            (status, body) = try await patch(tenant.id, tenant.key, #"{"name": "  Renamed Co "}"#)
            #expect(status == .ok && body["name"] as? String == "Renamed Co" && body["tax_rate_bps"] as? Int == 800, "\(body)")
            // The tax rate is the operator's: a tenant lowering it would lower what it owes.
            (status, body) = try await patch(tenant.id, tenant.key, #"{"tax_rate_bps": 0}"#)
            #expect(status == .forbidden && (body["error"] as? [String: Any])?["field"] as? String == "tax_rate_bps", "\(body)")
            for (change, field) in [
                (#"{"billing_email": "<a@b.test"}"#, "billing_email"), (#"{"name": ""}"#, "name"), (#"{"tax_rate_bps": 10001}"#, "tax_rate_bps"),
                (#"{"payment_provider": "stripe"}"#, "payment_provider"),
            ] {
                (status, body) = try await patch(tenant.id, adminToken, change)
                #expect(status == .badRequest && (body["error"] as? [String: Any])?["field"] as? String == field, "\(change): \(body)")
            }
            // Another tenant's id: 404 to a tenant key, as for reads.
            (status, _) = try await patch(other.id, tenant.key, #"{"name": "Mine now"}"#)
            #expect(status == .notFound)
            (status, body) = try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get, headers: bearer(adminToken)) {
                ($0.status, try json($0))
            }
            #expect(body["billing_email"] as? String == "ap-new@tenant.test" && body["name"] as? String == "Renamed Co")
        }
    }

    @Test("payment_provider defaults to none and can be stripe; a tenant's cards are listed as brand and last4 to it alone")
    func paymentProviderAndMethods() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let plain = try await createTenant(client)
            try await client.execute(uri: "/v1/tenants/\(plain.id)", method: .get, headers: bearer(plain.key)) { response in
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(json?["payment_provider"] as? String == "none")
            }
            let body = #"{"name": "Carded", "billing_email": "ap@carded.test", "payment_provider": "stripe"}"#
            let carded = try await client.execute(
                uri: "/v1/tenants", method: .post, headers: bearer(adminToken), body: ByteBuffer(string: body)
            ) { response in
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(json?["payment_provider"] as? String == "stripe")
                return (id: try #require(json?["id"] as? String), key: try #require(json?["api_key"] as? String))
            }
            let card = "pm_api\(UUID().uuidString.prefix(8))"
            try await pool.query(
                "INSERT INTO payment_methods (tenant_id, provider_id, brand, last4, exp_month, exp_year) VALUES ($1, $2, 'visa', '4242', 12, 2030)",
                [UUID(uuidString: carded.id)!, card])
            try await client.execute(uri: "/v1/tenants/\(carded.id)/payment-methods", method: .get, headers: bearer(carded.key)) { response in
                #expect(response.status == .ok)
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                let methods = try #require(json?["data"] as? [[String: Any]])
                #expect(methods.count == 1)
                #expect(methods.first?["provider_id"] as? String == card)
                #expect(methods.first?["brand"] as? String == "visa")
                #expect(methods.first?["last4"] as? String == "4242")
                #expect(methods.first?["exp_month"] as? Int == 12)
            }
            try await client.execute(uri: "/v1/tenants/\(carded.id)/payment-methods", method: .get, headers: bearer(plain.key)) { response in
                #expect(response.status == .notFound)
            }
        }
        await pool.close()
    }

    @Test("key rotation: a new key works, the old one until revoked, then 401")
    func rotation() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let newKey = try await client.execute(
                uri: "/v1/tenants/\(tenant.id)/api-keys", method: .post, headers: bearer(tenant.key)
            ) { response in
                #expect(response.status == .created)
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                return try #require(json?["api_key"] as? String)
            }
            #expect(newKey != tenant.key)
            let keys = try await client.execute(
                uri: "/v1/tenants/\(tenant.id)/api-keys", method: .get, headers: bearer(newKey)
            ) { response in
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                return try #require(json?["data"] as? [[String: Any]])
            }
            #expect(keys.count == 2)
            #expect(!String(describing: keys).contains(tenant.key))
            let oldKeyID = try #require(keys.first { !newKey.hasPrefix($0["prefix"] as? String ?? "-") }?["id"] as? String)
            try await client.execute(
                uri: "/v1/tenants/\(tenant.id)/api-keys/\(oldKeyID)", method: .delete, headers: bearer(newKey)
            ) { response in #expect(response.status == .noContent) }
            try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get, headers: bearer(newKey)) { response in
                #expect(response.status == .ok)
            }
        }
    }
}
