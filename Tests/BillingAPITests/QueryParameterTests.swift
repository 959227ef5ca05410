import Foundation
import Hummingbird
import HummingbirdTesting
import TallyTestSupport
import Testing

@testable import BillingAPI
@testable import TallyHTTP

/// The query parameters an operation takes are those its OpenAPI operation documents
/// (`QueryParameterRules`, `OperationRulesMiddleware`): anything else is a 400 naming it.
@Suite("Query parameters: only those documented")
struct QueryParameterTests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    @Test("a misspelt filter is refused, not dropped: ?tenant= would have listed every tenant's invoices to the admin")
    func misspeltFilter() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            try await client.execute(uri: "/v1/invoices?tenant=\(tenant.id)&limit=5", method: .get, headers: bearer(adminToken)) { response in
                #expect(response.status == .badRequest)
                let error = try #require(try json(response)["error"] as? [String: Any])
                #expect(error["code"] as? String == "INVALID_REQUEST")
                #expect(error["field"] as? String == "tenant")
                let message = try #require(error["message"] as? String)
                #expect(message.contains("is not a query parameter of GET /v1/invoices (did you mean tenant_id?)"), "\(message)")
                #expect(message.contains("its query parameters are tenant_id, status, from, to, limit, starting_after"), "\(message)")
            }
            // The parameter as documented is taken, with the others.
            try await client.execute(uri: "/v1/invoices?tenant_id=\(tenant.id)&limit=5", method: .get, headers: bearer(adminToken)) { response in
                #expect(response.status == .ok)
                let data = try json(response)["data"] as? [Any]
                #expect(data?.isEmpty == true)
            }
        }
    }

    @Test("a parameter given twice is refused; one the operation does not take at all says it takes none")
    func twiceAndNone() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            try await client.execute(uri: "/v1/alerts?limit=5&limit=50", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .badRequest)
                let error = try #require(try json(response)["error"] as? [String: Any])
                #expect(error["field"] as? String == "limit")
                #expect((error["message"] as? String)?.contains("is given twice") == true, "\(error)")
            }
            try await client.execute(uri: "/v1/tenants/\(tenant.id)?expand=api_keys", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .badRequest)
                let error = try #require(try json(response)["error"] as? [String: Any])
                #expect(error["field"] as? String == "expand")
                #expect(error["message"] as? String == "is not a query parameter of GET /v1/tenants/{}; it takes none")
            }
            // A NUL (%00) in a value: refused, not read as what comes before it (the usage history
            // answered the metric's series, and a second one named with the NUL).
            try await client.execute(uri: "/v1/usage/history?metric=api_calls%00zzz", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .badRequest)
                let error = try #require(try json(response)["error"] as? [String: Any])
                #expect(error["field"] as? String == "metric")
                #expect(error["message"] as? String == "holds a NUL character")
            }
            // A POST is checked as well: the subscription is not created.
            try await client.execute(
                uri: "/v1/subscriptions?dry_run=true", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id)", "plan": "starter"}"#)
            ) { response in
                #expect(response.status == .badRequest)
                let error = try #require(try json(response)["error"] as? [String: Any])
                #expect(error["field"] as? String == "dry_run")
            }
            try await client.execute(uri: "/v1/subscriptions?tenant_id=\(tenant.id)", method: .get, headers: bearer(adminToken)) { response in
                #expect(response.status == .ok)
                let data = try json(response)["data"] as? [Any]
                #expect(data?.isEmpty == true)
            }
            // A trailing `&` and the documented parameters pass.
            try await client.execute(uri: "/v1/alerts?tenant_id=\(tenant.id)&limit=1&", method: .get, headers: bearer(adminToken)) { response in
                #expect(response.status == .ok)
            }
            // Without a token the answer is still 401: who asks comes before what is asked.
            try await client.execute(uri: "/v1/alerts?colour=red", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test("the rules are read from the served document: path-level parameters and component references included")
    func rulesFromDocument() throws {
        let document = ##"""
            {"openapi": "3.1.0", "paths": {
              "/v1/things/{thing_id}": {
                "parameters": [{"$ref": "#/components/parameters/Expand"}, {"name": "thing_id", "in": "path", "required": true}],
                "get": {"parameters": [{"name": "at", "in": "query"}], "responses": {}},
                "delete": {"responses": {}}
              },
              "/v1/things": {"summary": "things", "get": {"parameters": [{"$ref": "#/components/parameters/Limit"}], "responses": {}}}
            },
            "components": {"parameters": {
              "Limit": {"name": "limit", "in": "query"}, "Expand": {"name": "expand", "in": "query"}}}}
            """##
        let rules = try QueryParameterRules(openAPI: document)
        #expect(
            rules.operations == ["GET /v1/things/{}": ["expand", "at"], "DELETE /v1/things/{}": ["expand"], "GET /v1/things": ["limit"]])
        #expect(throws: OpenAPIShapeError.self) {
            try QueryParameterRules(openAPI: ##"{"paths": {"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/Gone"}]}}}}"##)
        }

        // The Billing API's own document: its list operations take their filters and pages.
        let served = try QueryParameterRules(openAPI: OpenAPIDocument.json)
        #expect(served.operations["GET /v1/usage/history"] == ["tenant_id", "metric", "range", "granularity"])
        #expect(served.operations["GET /v1/alerts"] == ["tenant_id", "limit", "starting_after"])
        #expect(served.operations["POST /v1/subscriptions/{}/cancel"] == [])
        #expect(served.operations.count > 30)
    }

    @Test("a method a path does not take is a 405 with Allow, not 'no such route'; HEAD is answered as GET without a body")
    func methods() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            for (method, uri, allowed) in [
                (HTTPRequest.Method.put, "/v1/subscriptions", "GET, HEAD, POST"), (.delete, "/v1/invoices/\(UUID())", "GET, HEAD"),
                (.put, "/v1/tenants/\(tenant.id)", "GET, HEAD, PATCH"), (.get, "/v1/billing-runs/\(UUID())/x", nil),
                // The ingest API's path in the document is not this server's.
                (.get, "/v1/events", nil), (.post, "/v1/events", nil),
            ] {
                try await client.execute(uri: uri, method: method, headers: bearer(adminToken)) { response in
                    if let allowed {
                        #expect(response.status == .methodNotAllowed, "\(method) \(uri)")
                        #expect(response.headers[.allow] == allowed, "\(method) \(uri)")
                        let error = try #require(try json(response)["error"] as? [String: Any])
                        #expect(error["code"] as? String == "METHOD_NOT_ALLOWED")
                    } else {
                        #expect(response.status == .notFound, "\(method) \(uri)")
                    }
                }
            }
            let length = try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get, headers: bearer(tenant.key)) {
                #expect($0.status == .ok)
                return $0.body.readableBytes
            }
            try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .head, headers: bearer(tenant.key)) { response in
                #expect(response.status == .ok)
                #expect(response.body.readableBytes == 0)
                #expect(response.headers[.contentLength] == "\(length)")
            }
            // HEAD is checked as its GET: still authenticated, still the query it takes.
            try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .head) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/tenants/\(tenant.id)?expand=keys", method: .head, headers: bearer(tenant.key)) {
                #expect($0.status == .badRequest)
            }
        }
    }

    @Test("checking: route captures unnamed, HEAD as GET, an undocumented route unchecked")
    func checking() throws {
        let rules = QueryParameterRules(["GET /v1/alerts/{alert_id}": ["at"]])
        #expect(throws: Never.self) { try rules.check(method: "GET", path: "/v1/alerts/{id}", query: ["at": "x"]) }
        #expect(throws: Never.self) { try rules.check(method: "HEAD", path: "v1/alerts/:id", query: ["at": "x"]) }
        #expect(throws: Never.self) { try rules.check(method: "GET", path: "/dashboard/usage", query: ["range": "x"]) }
        #expect(throws: APIError.self) { try rules.check(method: "GET", path: "/v1/alerts/{id}", query: ["tenant_id": "x"]) }
        #expect(throws: Never.self) { try rules.check(method: "DELETE", path: "/v1/alerts/{id}", query: ["at": "x"]) }
        // Methods at a request's path, each capture one segment.
        let many = QueryParameterRules(["GET /v1/alerts": [], "POST /v1/alerts": [], "DELETE /v1/alerts/{alert_id}": [], "GET /v1/alerts/{}": []])
        #expect(many.methods(at: "/v1/alerts") == ["GET", "HEAD", "POST"])
        #expect(many.methods(at: "/v1/alerts/0d7e") == ["DELETE", "GET", "HEAD"])
        #expect(many.methods(at: "/v1/alerts/0d7e/x") == [])
        // A percent-encoded key is compared as sent: the handlers would not read it either.
        #expect(throws: APIError.self) { try rules.check(method: "GET", path: "/v1/alerts/{id}", query: ["%61t": "x"]) }
        // A long unknown key is echoed cut to 100 characters.
        let long = String(repeating: "k", count: 300)
        do {
            try rules.check(method: "GET", path: "/v1/alerts/{id}", query: [Substring(long): "x"])
            Issue.record("a 300-character key was taken")
        } catch let error as APIError {
            #expect(error.field == String(repeating: "k", count: 100) + "…")
        }
    }
}
