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

/// Cursor pagination (`limit`, `starting_after`, `has_more`) on every list endpoint, and
/// the admin's invoice listing across tenants with filters.
@Suite("Billing API: cursor pagination of every list")
struct PaginationAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    /// Every item of `uri`, page by page (`limit` each), checking `has_more` on the way.
    func walk(_ client: some TestClientProtocol, _ uri: String, token: String, limit: Int) async throws -> [[String: Any]] {
        var items: [[String: Any]] = []
        var after: String?
        for _ in 0..<100 {
            let separator = uri.contains("?") ? "&" : "?"
            let page = "\(uri)\(separator)limit=\(limit)" + (after.map { "&starting_after=\($0)" } ?? "")
            let body = try await client.execute(uri: page, method: .get, headers: bearer(token)) { response in
                #expect(response.status == .ok, "\(page)")
                return try json(response)
            }
            let data = try #require(body["data"] as? [[String: Any]])
            let more = try #require(body["has_more"] as? Bool)
            #expect(data.count <= limit)
            items += data
            if !more { return items }
            #expect(data.count == limit)
            after = try #require(data.last?["id"] as? String)
        }
        Issue.record("more than 100 pages")
        return items
    }

    func status(_ client: some TestClientProtocol, _ uri: String, token: String) async throws -> (HTTPResponse.Status, String?) {
        try await client.execute(uri: uri, method: .get, headers: bearer(token)) { response in
            (response.status, (try json(response)["error"] as? [String: Any])?["field"] as? String)
        }
    }

    @Test("alerts, subscriptions, webhook endpoints and API keys page by cursor; bad limits and foreign cursors are 400s naming the field")
    func smallLists() async throws {
        try await app(allowPrivateWebhooks: true).test(.router) { client in
            let tenant = try await createTenant(client, name: "Paged Co")
            let other = try await createTenant(client, name: "Other Co")
            var created: [String] = []
            for value in 1...5 {
                try await client.execute(
                    uri: "/v1/alerts", method: .post, headers: bearer(tenant.key),
                    body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": "\#(value)", "channels": ["email"]}"#)
                ) { response in created.append(try #require(try json(response)["id"] as? String)) }
            }
            let alerts = try await walk(client, "/v1/alerts", token: tenant.key, limit: 2)
            #expect(alerts.compactMap { $0["id"] as? String } == created)
            #expect(try await walk(client, "/v1/alerts", token: tenant.key, limit: 5).count == 5)
            #expect(try await walk(client, "/v1/alerts?tenant_id=\(tenant.id)", token: adminToken, limit: 100).count == 5)
            for query in ["limit=0", "limit=101", "limit=ten"] {
                let (code, field) = try await status(client, "/v1/alerts?\(query)", token: tenant.key)
                #expect(code == .badRequest && field == "limit", "\(query)")
            }
            let otherAlert = try await client.execute(
                uri: "/v1/alerts", method: .post, headers: bearer(other.key),
                body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "anomaly", "channels": ["email"]}"#)
            ) { try #require(try json($0)["id"] as? String) }
            for cursor in [otherAlert, UUID().uuidString, "nope"] {
                let (code, field) = try await status(client, "/v1/alerts?starting_after=\(cursor)", token: tenant.key)
                #expect(code == .badRequest && field == "starting_after", "\(cursor)")
            }

            // Two subscriptions one after the other, far in the future so no billing run bills them.
            let first = try await client.execute(
                uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id)", "plan": "starter", "start": "2100-01-01T00:00:00Z"}"#)
            ) { try #require(try json($0)["id"] as? String) }
            try await client.execute(
                uri: "/v1/subscriptions/\(first)/cancel", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"at": "2100-01-15T00:00:00Z"}"#)
            ) { response in #expect(response.status == .ok) }
            try await client.execute(
                uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id)", "plan": "starter", "start": "2100-02-01T00:00:00Z"}"#)
            ) { response in #expect(response.status == .created) }
            #expect(try await walk(client, "/v1/subscriptions", token: tenant.key, limit: 1).count == 2)
            for index in 0..<2 {
                try await client.execute(
                    uri: "/v1/webhook-endpoints", method: .post, headers: bearer(tenant.key),
                    body: ByteBuffer(string: #"{"url": "http://127.0.0.1:9/hook\#(index)"}"#)
                ) { response in #expect(response.status == .created) }
            }
            #expect(try await walk(client, "/v1/webhook-endpoints", token: tenant.key, limit: 1).count == 2)
            try await client.execute(uri: "/v1/tenants/\(tenant.id)/api-keys", method: .post, headers: bearer(adminToken)) { response in
                #expect(response.status == .created)
            }
            #expect(try await walk(client, "/v1/tenants/\(tenant.id)/api-keys", token: tenant.key, limit: 1).count == 2)
        }
    }

    @Test("invoices: a tenant pages its own, newest period first; the admin lists across tenants by status and issue time")
    func invoices() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let a = try await createTenant(client, name: "Invoiced A")
            let b = try await createTenant(client, name: "Invoiced B")
            // Issued on a day of 2001 no other test uses, so the admin's filtered listing sees only these.
            let day = "2001-0\(Int.random(in: 1...9))-\(Int.random(in: 10...28))"
            var ids: [String: UUID] = [:]
            for (name, tenant, month, status) in [("a1", a, 1, "open"), ("a2", a, 2, "paid"), ("a3", a, 3, "open"), ("b1", b, 2, "open")] {
                let id = UUID()
                ids[name] = id
                try await pool.query(
                    """
                    INSERT INTO invoices (id, tenant_id, number, status, period_start, period_end, subtotal_cents, tax_rate_bps, tax_cents,
                                          total_cents, issued_at, due_at, as_of)
                    VALUES ($1, $2, $3, $4, $5, $5::timestamptz + interval '1 month', 100, 0, 0, 100, $6, $6, $6)
                    """,
                    [
                        id, UUID(uuidString: tenant.id)!, "INV-2099-\(Int.random(in: 100_000...999_999))", status,
                        "2000-0\(month)-01T00:00:00Z", "\(day)T12:00:00Z",
                    ])
            }
            try await withCleanup(
                {
                    let own = try await walk(client, "/v1/invoices", token: a.key, limit: 2)
                    #expect(own.compactMap { $0["id"] as? String } == ["a3", "a2", "a1"].map { ids[$0]!.uuidString.lowercased() })
                    let window = "from=\(day)T00:00:00Z&to=\(day)T23:59:59Z"
                    let all = try await walk(client, "/v1/invoices?\(window)", token: adminToken, limit: 1)
                    #expect(Set(ids.values.map { $0.uuidString.lowercased() }).isSubset(of: Set(all.compactMap { $0["id"] as? String })))
                    let open = try await walk(client, "/v1/invoices?\(window)&status=open", token: adminToken, limit: 10)
                    #expect(
                        Set(["a1", "a3", "b1"].map { ids[$0]!.uuidString.lowercased() }).isSubset(of: Set(open.compactMap { $0["id"] as? String })))
                    #expect(!open.contains { $0["id"] as? String == ids["a2"]!.uuidString.lowercased() })
                    let paidOfA = try await walk(client, "/v1/invoices?\(window)&status=paid&tenant_id=\(a.id)", token: adminToken, limit: 10)
                    #expect(paidOfA.compactMap { $0["id"] as? String } == [ids["a2"]!.uuidString.lowercased()])
                    // A tenant key never lists across tenants, and B's invoice is no cursor for A.
                    let (foreign, field) = try await status(client, "/v1/invoices?starting_after=\(ids["b1"]!)", token: a.key)
                    #expect(foreign == .badRequest && field == "starting_after")
                    let (crossing, _) = try await status(client, "/v1/invoices?tenant_id=\(b.id)", token: a.key)
                    #expect(crossing == .notFound)
                    let (badStatus, statusField) = try await status(client, "/v1/invoices?status=late", token: a.key)
                    #expect(badStatus == .badRequest && statusField == "status")
                },
                cleanup: {
                    try await pool.query("DELETE FROM invoices WHERE id = ANY($1::uuid[])", [PostgresTextArray(ids.values.map { $0.uuidString })])
                })
        }
        await pool.close()
    }

    @Test("billing runs: the admin pages them newest first; a tenant key cannot list them")
    func billingRuns() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, name: "No Subscription Co")
            var runs: [String] = []
            for _ in 0..<2 {
                try await client.execute(
                    uri: "/v1/billing-runs", method: .post, headers: bearer(adminToken),
                    body: ByteBuffer(string: #"{"as_of": "2001-01-01T00:00:00Z", "tenant_id": "\#(tenant.id)"}"#)
                ) { response in runs.append(try #require(try json(response)["id"] as? String)) }
            }
            let page = try await client.execute(uri: "/v1/billing-runs?limit=100", method: .get, headers: bearer(adminToken)) { response in
                try #require(try json(response)["data"] as? [[String: Any]])
            }
            let listed = page.compactMap { $0["id"] as? String }
            let first = try #require(listed.firstIndex(of: runs[0]))
            let second = try #require(listed.firstIndex(of: runs[1]))
            #expect(second < first)
            let (code, _) = try await status(client, "/v1/billing-runs", token: tenant.key)
            #expect(code == .forbidden)
        }
    }
}
