import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TallyTestSupport
import Testing

@testable import BillingAPI

/// `/v1/webhook-endpoints` over the real PostgreSQL.
@Suite("Billing API: webhook endpoints")
struct WebhookEndpointAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    func createTenant(_ client: some TestClientProtocol) async throws -> (id: String, key: String) {
        try await client.execute(
            uri: "/v1/tenants", method: .post, headers: bearer(adminToken),
            body: ByteBuffer(string: #"{"name": "Hooked", "billing_email": "ap@hooked.test"}"#)
        ) { response in
            let body = try json(response)
            return (try #require(body["id"] as? String), try #require(body["api_key"] as? String))
        }
    }

    func problem(_ response: TestResponse) throws -> (code: String?, field: String?) {
        let error = try json(response)["error"] as? [String: Any]
        return (error?["code"] as? String, error?["field"] as? String)
    }

    @Test("create shows the secret once; list, show, update, rotate and delete; every other tenant is 404")
    func lifecycleAndIsolation() async throws {
        try await app(allowPrivateWebhooks: true).test(.router) { client in
            let owner = try await createTenant(client)
            let other = try await createTenant(client)
            let created = try await client.execute(
                uri: "/v1/webhook-endpoints", method: .post, headers: bearer(owner.key),
                body: ByteBuffer(string: #"{"url": "http://127.0.0.1:9/hook", "events": ["invoice.finalized", "alert.triggered"]}"#)
            ) { response in
                #expect(response.status == .created)
                return try json(response)
            }
            let id = try #require(created["id"] as? String)
            #expect((created["secret"] as? String)?.hasPrefix("whsec_") == true)
            #expect(created["events"] as? [String] == ["alert.triggered", "invoice.finalized"])
            try await client.execute(uri: "/v1/webhook-endpoints/\(id)", method: .get, headers: bearer(owner.key)) { response in
                let body = try json(response)
                #expect(response.status == .ok)
                #expect(body["secret"] == nil && body["id"] as? String == id)
            }
            try await client.execute(uri: "/v1/webhook-endpoints", method: .get, headers: bearer(owner.key)) { response in
                let listed = (try json(response)["data"] as? [[String: Any]]) ?? []
                #expect(listed.map { $0["id"] as? String } == [id])
            }
            // The other tenant sees nothing of it, and can change nothing.
            try await client.execute(uri: "/v1/webhook-endpoints", method: .get, headers: bearer(other.key)) { response in
                let listed = try json(response)["data"] as? [[String: Any]]
                #expect(listed?.isEmpty == true)
            }
            for (method, path, body) in [
                (HTTPRequest.Method.get, "", nil), (.patch, "", #"{"active": false}"#), (.delete, "", nil), (.post, "/rotate-secret", nil),
            ] {
                try await client.execute(
                    uri: "/v1/webhook-endpoints/\(id)\(path)", method: method, headers: bearer(other.key), body: body.map { ByteBuffer(string: $0) }
                ) { response in
                    #expect(response.status == .notFound, "\(method) \(path)")
                }
            }
            try await client.execute(
                uri: "/v1/webhook-endpoints", method: .post, headers: bearer(other.key),
                body: ByteBuffer(string: #"{"tenant_id": "\#(owner.id)", "url": "http://127.0.0.1:9/x", "events": ["*"]}"#)
            ) { response in #expect(response.status == .notFound) }
            // A change names no tenant (the endpoint's is kept), and a new endpoint starts active.
            for (method, uri, body, field) in [
                (HTTPRequest.Method.patch, "/v1/webhook-endpoints/\(id)", #"{"tenant_id": "\#(other.id)", "active": false}"#, "tenant_id"),
                (.post, "/v1/webhook-endpoints", #"{"url": "http://127.0.0.1:9/x", "active": false}"#, "active"),
            ] {
                try await client.execute(uri: uri, method: method, headers: bearer(owner.key), body: ByteBuffer(string: body)) { response in
                    let error = try json(response)["error"] as? [String: Any]
                    #expect(response.status == .badRequest && error?["field"] as? String == field, "\(error ?? [:])")
                }
            }
            // The owner changes it, rotates its secret and deletes it.
            try await client.execute(
                uri: "/v1/webhook-endpoints/\(id)", method: .patch, headers: bearer(owner.key),
                body: ByteBuffer(string: #"{"events": ["*"], "active": false}"#)
            ) { response in
                let body = try json(response)
                #expect(body["events"] as? [String] == ["*"] && body["active"] as? Bool == false)
            }
            try await client.execute(uri: "/v1/webhook-endpoints/\(id)/rotate-secret", method: .post, headers: bearer(owner.key)) { response in
                let secret = try json(response)["secret"] as? String
                #expect(secret?.hasPrefix("whsec_") == true && secret != created["secret"] as? String)
            }
            try await client.execute(uri: "/v1/webhook-endpoints/\(id)", method: .delete, headers: bearer(adminToken)) { response in
                #expect(response.status == .noContent)
            }
            try await client.execute(uri: "/v1/webhook-endpoints/\(id)", method: .get, headers: bearer(owner.key)) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test("a tenant has at most 16 endpoints, also when 40 are asked for at once")
    func endpointLimit() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        try await client.execute(
                            uri: "/v1/webhook-endpoints", method: .post, headers: bearer(tenant.key),
                            body: ByteBuffer(string: #"{"url": "https://93.184.216.34/hook/\#(index)"}"#)
                        ) { $0.status }
                    }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            // Counted apart from the insert, all 40 saw room (a helper made 17 of 80 over HTTP).
            #expect(statuses.filter { $0 == .created }.count == WebhookEndpointRoutes.maxEndpoints, "\(statuses)")
            #expect(statuses.filter { $0 == .conflict }.count == 40 - WebhookEndpointRoutes.maxEndpoints, "\(statuses)")
            try await client.execute(uri: "/v1/webhook-endpoints?limit=100", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [[String: Any]]
                #expect(data?.count == WebhookEndpointRoutes.maxEndpoints)
            }
            // The admin naming a tenant that does not exist: 404 naming tenant_id (the foreign key's 500 before).
            try await client.execute(
                uri: "/v1/webhook-endpoints", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(UUID().uuidString)", "url": "https://93.184.216.34/hook"}"#)
            ) { response in
                #expect(response.status == .notFound)
                let field = (try json(response)["error"] as? [String: Any])?["field"] as? String
                #expect(field == "tenant_id")
            }
        }
    }

    @Test("URLs must be http(s) and public unless private addresses are allowed; events must be known; fields are named")
    func refusals() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let cases: [(String, String)] = [
                (#"{"url": "http://127.0.0.1:8080/hook", "events": ["*"]}"#, "url"),
                (#"{"url": "http://localhost/hook", "events": ["*"]}"#, "url"),
                (#"{"url": "http://169.254.169.254/latest/meta-data", "events": ["*"]}"#, "url"),
                (#"{"url": "http://10.1.2.3/hook", "events": ["*"]}"#, "url"),
                (#"{"url": "http://[::1]/hook", "events": ["*"]}"#, "url"),
                (#"{"url": "ftp://example.com/hook", "events": ["*"]}"#, "url"),
                (#"{"url": "http://user:pw@93.184.216.34/hook", "events": ["*"]}"#, "url"),
                (#"{"events": ["*"]}"#, "url"),
                (#"{"url": "http://93.184.216.34/hook", "events": ["invoice.voided"]}"#, "events[0]"),
                (#"{"url": "http://93.184.216.34/hook", "events": []}"#, "events"),
                (#"{"url": "http://93.184.216.34/hook", "description": "\#(String(repeating: "x", count: 501))"}"#, "description"),
                // One Character but 501 code points, as PostgreSQL counts (it was a 500 whose log
                // quoted the new endpoint's signing secret).
                (#"{"url": "http://93.184.216.34/hook", "description": "e\#(String(repeating: "\u{301}", count: 500))"}"#, "description"),
            ]
            for (body, field) in cases {
                try await client.execute(
                    uri: "/v1/webhook-endpoints", method: .post, headers: bearer(tenant.key), body: ByteBuffer(string: body)
                ) { response in
                    let problem = try problem(response)
                    #expect(response.status == .badRequest, "\(body)")
                    #expect(problem.field == field, "\(body)")
                }
            }
            // A public address literal passes (nothing is contacted at creation); a scheme in
            // capitals is kept in lower case (it broke the table's check: a 500).
            try await client.execute(
                uri: "/v1/webhook-endpoints", method: .post, headers: bearer(tenant.key),
                body: ByteBuffer(string: #"{"url": "HTTPS://93.184.216.34/hook", "events": ["quota.exceeded"]}"#)
            ) { response in
                #expect(response.status == .created)
                let url = try json(response)["url"] as? String
                #expect(url == "https://93.184.216.34/hook")
            }
        }
    }
}
