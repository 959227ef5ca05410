import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

@testable import BillingAPI

/// `GET /v1/usage` and `/v1/alerts` over the real PostgreSQL.
@Suite("Billing API: usage reads and alerts")
struct UsageAndAlertAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"
    /// The current UTC month ("YYYY-MM") and the next: the usage rows below are dated in
    /// it, so their partition exists whenever the suite runs.
    let month: String
    let nextMonth: String

    init() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let now = calendar.dateComponents([.year, .month], from: TestClock.now())
        let next = calendar.dateComponents(
            [.year, .month], from: calendar.date(byAdding: .month, value: 1, to: calendar.date(from: now)!)!)
        month = String(format: "%04d-%02d", now.year!, now.month!)
        nextMonth = String(format: "%04d-%02d", next.year!, next.month!)
    }

    func errorField(_ response: TestResponse) throws -> String? {
        (try json(response)["error"] as? [String: Any])?["field"] as? String
    }

    /// A monthly starter subscription from the 1st of this month, written as the subscriptions API would.
    func subscribeToStarter(_ tenant: String, pool: PostgresPool) async throws {
        let subscription = try await pool.query(
            "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, '\(month)-01T00:00:00Z', '\(month)-01T00:00:00Z') RETURNING id",
            [UUID(uuidString: tenant)!])[0].decode(0, as: UUID.self)
        try await pool.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, 'starter', 1, '\(month)-01T00:00:00Z', 'start', '\(month)-01T00:00:00Z')
            """, [subscription])
    }

    @Test("usage over [from, to) with the plan's quota; a tenant key sees only its own usage")
    func usageRead() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let other = try await createTenant(client)
            // Two events at 10:15 and one at 11:30 (raw and rolled up as the Aggregator writes them), on the starter plan.
            let script = """
                INSERT INTO usage_events (tenant_id, event_id, metric, quantity, occurred_at, occurred_month) VALUES
                  ($1, 'a', 'api_calls', 2.5, '\(month)-20T10:15:00Z', '\(month)-01'),
                  ($1, 'b', 'api_calls', 1, '\(month)-20T10:15:00Z', '\(month)-01'),
                  ($1, 'c', 'api_calls', 4, '\(month)-20T11:30:00Z', '\(month)-01');
                INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max) VALUES
                  ($1, 'api_calls', '\(month)-20T10:00:00Z', 3.5, 2, 2.5), ($1, 'api_calls', '\(month)-20T11:00:00Z', 4, 1, 4)
                """.replacingOccurrences(of: "$1", with: "'\(tenant.id)'")
            try await pool.withConnection { try await $0.executeScript(script) }
            try await subscribeToStarter(tenant.id, pool: pool)
            let whole = "/v1/usage?tenant_id=\(tenant.id)&from=\(month)-20T00:00:00Z&to=\(month)-21T00:00:00Z"
            try await client.execute(uri: whole, method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .ok)
                let body = try json(response)
                #expect(body["plan"] as? String == "starter")
                let metrics = try #require(body["metrics"] as? [[String: Any]])
                let calls = try #require(metrics.first { $0["metric"] as? String == "api_calls" })
                #expect(calls["value"] as? String == "7.5")
                #expect(calls["quota"] as? String == "1000")
                #expect(calls["aggregation"] as? String == "sum")
                #expect(metrics.contains { $0["metric"] as? String == "users" && $0["value"] as? String == "0" && $0["quota"] as? String == "3" })
            }
            // A range cutting through the 11:00 hour reads that hour from the raw events.
            let cut = "/v1/usage?from=\(month)-20T10:00:00Z&to=\(month)-20T11:29:59Z"
            try await client.execute(uri: cut, method: .get, headers: bearer(tenant.key)) { response in
                let metrics = try #require(try json(response)["metrics"] as? [[String: Any]])
                #expect(metrics.first { $0["metric"] as? String == "api_calls" }?["value"] as? String == "3.5")
            }
            try await client.execute(uri: whole, method: .get, headers: bearer(other.key)) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/v1/usage?from=\(month)-20T00:00:00Z&to=\(month)-21T00:00:00Z", method: .get, headers: bearer(adminToken))
            { response in
                #expect(response.status == .badRequest)
                let field = try errorField(response)
                #expect(field == "tenant_id")
            }
            try await client.execute(uri: "/v1/usage?from=yesterday&to=\(month)-21T00:00:00Z", method: .get, headers: bearer(tenant.key)) {
                response in
                #expect(response.status == .badRequest)
                let field = try errorField(response)
                #expect(field == "from")
            }
        }
        await pool.close()
    }

    @Test("the upcoming invoice: the open period's base fee, overage of the usage counted up to `at`, tax; 404 without an open period")
    func upcomingInvoice() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let other = try await createTenant(client)
            try await pool.query("UPDATE tenants SET tax_rate_bps = 725 WHERE id = $1", [UUID(uuidString: tenant.id)!])
            // 1,500 API calls in the 10:00 hour of Nov 20 (raw and rolled up), on the starter plan (quota 1,000, 10 ¢ over).
            let script = """
                INSERT INTO usage_events (tenant_id, event_id, metric, quantity, occurred_at, occurred_month) VALUES
                  ($1, 'u1', 'api_calls', 1000, '\(month)-20T10:15:00Z', '\(month)-01'),
                  ($1, 'u2', 'api_calls', 500, '\(month)-20T10:45:00Z', '\(month)-01');
                INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max) VALUES
                  ($1, 'api_calls', '\(month)-20T10:00:00Z', 1500, 2, 1000)
                """.replacingOccurrences(of: "$1", with: "'\(tenant.id)'")
            try await pool.withConnection { try await $0.executeScript(script) }
            try await subscribeToStarter(tenant.id, pool: pool)
            try await client.execute(uri: "/v1/invoices/upcoming?at=\(month)-25T00:00:00Z", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .ok)
                let body = try json(response)
                #expect(body["period_start"] as? String == "\(month)-01T00:00:00.000Z")
                #expect(body["period_end"] as? String == "\(nextMonth)-01T00:00:00.000Z")
                #expect(body["plan"] as? String == "starter")
                let lines = try #require(body["lines"] as? [[String: Any]])
                #expect(lines.map { $0["amount_cents"] as? Int } == [29_900, 5_000])
                #expect(lines.map { $0["kind"] as? String } == ["base", "overage"])
                #expect(lines.last?["quantity"] as? String == "500")
                #expect(body["subtotal_cents"] as? Int == 34_900)
                #expect(body["tax_cents"] as? Int == 2_530)  // 34,900 × 7.25 % = 2,530.25
                #expect(body["total_cents"] as? Int == 37_430)
            }
            // Before the usage happened: the base fee only.
            try await client.execute(
                uri: "/v1/invoices/upcoming?tenant_id=\(tenant.id)&at=\(month)-20T10:00:00Z", method: .get, headers: bearer(adminToken)
            ) { response in
                let subtotal = try json(response)["subtotal_cents"] as? Int
                #expect(subtotal == 29_900)
            }
            try await client.execute(uri: "/v1/invoices/upcoming?at=\(month)-25T00:00:00Z", method: .get, headers: bearer(other.key)) { response in
                #expect(response.status == .notFound)
                let code = (try json(response)["error"] as? [String: Any])?["code"] as? String
                #expect(code == "NO_OPEN_PERIOD")
            }
            try await client.execute(uri: "/v1/invoices/upcoming?tenant_id=\(tenant.id)", method: .get, headers: bearer(other.key)) { response in
                #expect(response.status != .ok)
            }
            try await client.execute(uri: "/v1/invoices/upcoming?at=soon", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .badRequest)
                let field = try errorField(response)
                #expect(field == "at")
            }
        }
        await pool.close()
    }

    @Test("a tenant has at most 100 alerts, also when 120 are asked for at once")
    func alertLimit() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for index in 0..<120 {
                    group.addTask {
                        try await client.execute(
                            uri: "/v1/alerts", method: .post, headers: bearer(tenant.key),
                            body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": \#(index + 1)}"#)
                        ) { $0.status }
                    }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .created }.count == AlertStore.maxPerTenant, "\(statuses)")
            #expect(statuses.filter { $0 == .conflict }.count == 120 - AlertStore.maxPerTenant, "\(statuses)")
            try await client.execute(uri: "/v1/alerts?limit=100", method: .get, headers: bearer(tenant.key)) { response in
                let body = try json(response)
                #expect((body["data"] as? [Any])?.count == AlertStore.maxPerTenant)
                #expect(body["has_more"] as? Bool == false)
            }
            // The admin naming a tenant that does not exist: 404 naming tenant_id (the foreign key's 500 before).
            try await client.execute(
                uri: "/v1/alerts", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(UUID().uuidString)", "metric": "api_calls", "kind": "threshold", "threshold_value": 1}"#)
            ) { response in
                #expect(response.status == .notFound)
                let field = try errorField(response)
                #expect(field == "tenant_id")
            }
        }
    }

    @Test("alerts: create, list, show, delete; invalid fields named; another tenant's alert is invisible")
    func alertsCRUD() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let other = try await createTenant(client)
            let id = try await client.execute(
                uri: "/v1/alerts", method: .post, headers: bearer(tenant.key),
                body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": 500, "channels": ["email", "webhook"]}"#)
            ) { response in
                #expect(response.status == .created)
                let body = try json(response)
                #expect(body["threshold_value"] as? String == "500")
                #expect((body["tenant_id"] as? String).flatMap(UUID.init(uuidString:)) == UUID(uuidString: tenant.id))
                #expect(body["channels"] as? [String] == ["email", "webhook"])
                return try #require(body["id"] as? String)
            }
            try await client.execute(
                uri: "/v1/alerts", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id)", "metric": "api_calls", "kind": "quota", "threshold_percentage": "80"}"#)
            ) { response in #expect(response.status == .created) }
            for (body, field) in [
                (#"{"metric": "API", "kind": "threshold", "threshold_value": 1}"#, "metric"),
                (#"{"metric": "api_calls", "kind": "sometimes"}"#, "kind"),
                (#"{"metric": "api_calls", "kind": "threshold"}"#, "threshold_value"),
                (#"{"metric": "api_calls", "kind": "quota", "threshold_percentage": -5}"#, "threshold_percentage"),
                // Kept to 0.01 %: 0.001 was rounded to 0 by the column (a 500), 50.125 to 50.13.
                (#"{"metric": "api_calls", "kind": "quota", "threshold_percentage": "0.001"}"#, "threshold_percentage"),
                (#"{"metric": "api_calls", "kind": "quota", "threshold_percentage": "50.125"}"#, "threshold_percentage"),
                (#"{"metric": "api_calls", "kind": "anomaly", "channels": ["sms"]}"#, "channels"),
            ] {
                try await client.execute(uri: "/v1/alerts", method: .post, headers: bearer(tenant.key), body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest)
                    let found = try errorField(response)
                    #expect(found == field)
                }
            }
            // The reason, not a generic one: 1e34 is a positive decimal, but beyond what a total can reach.
            for (value, reason) in [("1e34", "must be below 1e34"), ("0.00001", "has 5 fractional digits"), ("0", "must be greater than 0")] {
                try await client.execute(
                    uri: "/v1/alerts", method: .post, headers: bearer(tenant.key),
                    body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": \#(value)}"#)
                ) { response in
                    #expect(response.status == .badRequest)
                    let error = try json(response)["error"] as? [String: Any]
                    #expect((error?["message"] as? String)?.hasPrefix(reason) == true, "\(value): \(String(describing: error))")
                }
            }
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [Any]
                #expect(data?.count == 2)
            }
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(other.key)) { response in
                let data = try json(response)["data"] as? [Any]
                #expect(data?.count == 0)
            }
            try await client.execute(uri: "/v1/alerts/\(id)", method: .get, headers: bearer(other.key)) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/v1/alerts/\(id)", method: .delete, headers: bearer(other.key)) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/v1/alerts/\(id)", method: .delete, headers: bearer(tenant.key)) { response in
                #expect(response.status == .noContent)
            }
            try await client.execute(uri: "/v1/alerts/\(id)", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .notFound)
            }
        }
    }
}
