import CivilTime
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresClient
import TallyTestSupport
import Testing
import UsageEvents

@testable import BillingAPI

/// `GET /v1/usage` without a range, `GET /v1/usage/history`, `GET /v1/usage/export.csv`
/// and the one spelling of ids, over the real PostgreSQL.
@Suite("Billing API: current usage, usage history and the CSV export")
struct UsageHistoryAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    /// Writes `events` (metric, quantity text, time) for `tenant` as raw events and as the
    /// hourly rollups the Aggregator would derive from them (sum, count and max per hour).
    func record(_ events: [(String, String, Date)], tenant: String, pool: PostgresPool) async throws {
        for (index, (metric, quantity, time)) in events.enumerated() {
            try await pool.query(
                """
                INSERT INTO usage_events (tenant_id, event_id, metric, quantity, occurred_at, occurred_month)
                VALUES ($1, $2, $3, $4::numeric, $5, date_trunc('month', $5::timestamptz AT TIME ZONE 'UTC')::date)
                """, [UUID(uuidString: tenant)!, "e\(index)", metric, quantity, time])
        }
        try await pool.query(
            """
            INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
            SELECT tenant_id, metric, date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', sum(quantity), count(*), max(quantity)
              FROM usage_events WHERE tenant_id = $1 GROUP BY 1, 2, 3
            """, [UUID(uuidString: tenant)!])
    }

    func deleteUsage(of tenant: String, pool: PostgresPool) async throws {
        let id = UUID(uuidString: tenant)!
        try await pool.query("DELETE FROM usage_events WHERE tenant_id = $1", [id])
        try await pool.query("DELETE FROM usage_rollups WHERE tenant_id = $1", [id])
    }

    static func utcDay(_ date: Date) -> String {
        let day = CivilDate(daysSinceEpoch: Int64((date.timeIntervalSince1970 / 86_400).rounded(.down)))
        return String(format: "%04d-%02d-%02d", day.year, day.month, day.day)
    }

    @Test(
        "without from/to, GET /v1/usage answers the current period and names it: the calendar month without a subscription, the billing period with one"
    )
    func currentPeriod() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            try await withCleanup(
                { try await currentPeriod(of: tenant, client: client, pool: pool) }, cleanup: { try await deleteUsage(of: tenant.id, pool: pool) })
        }
        await pool.close()
    }

    func currentPeriod(of tenant: (id: String, key: String), client: some TestClientProtocol, pool: PostgresPool) async throws {
        let now = TestClock.now()
        let earlier = TestClock.recent(60, before: now)
        try await record([("api_calls", "2.5", earlier), ("api_calls", "0.0001", earlier), ("users", "4", earlier)], tenant: tenant.id, pool: pool)
        try await client.execute(uri: "/v1/usage", method: .get, headers: bearer(tenant.key)) { response in
            #expect(response.status == .ok)
            let body = try json(response)
            let period = try #require(body["period"] as? [String: Any])
            #expect(period["kind"] as? String == "calendar_month")
            #expect((period["start"] as? String)?.hasPrefix(Self.utcDay(TestClock.recent(40 * 86_400, before: now))) == true)
            #expect(body["plan"] == nil)
            let metrics = try #require(body["metrics"] as? [[String: Any]])
            #expect(metrics.map { $0["metric"] as? String } == ["api_calls", "users"])
            #expect(metrics.map { $0["value"] as? String } == ["2.5001", "4"])
            #expect(metrics.allSatisfy { $0["unlimited"] as? Bool == true && $0["percent"] == nil })
        }
        // On the starter plan from the start of the month (quota 1,000 API calls, 3 seats).
        try await client.execute(
            uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
            body: ByteBuffer(
                string:
                    #"{"tenant_id": "\#(tenant.id)", "plan": "starter", "start": "\#(Self.utcDay(TestClock.recent(40 * 86_400, before: now)))T00:00:00Z"}"#
            )
        ) { response in #expect(response.status == .created) }
        try await client.execute(uri: "/v1/usage?tenant_id=\(tenant.id.uppercased())", method: .get, headers: bearer(adminToken)) { response in
            #expect(response.status == .ok)
            let body = try json(response)
            #expect(body["tenant_id"] as? String == tenant.id)
            #expect((body["period"] as? [String: Any])?["kind"] as? String == "billing")
            #expect(body["plan"] as? String == "starter")
            let metrics = try #require(body["metrics"] as? [[String: Any]])
            let users = try #require(metrics.first { $0["metric"] as? String == "users" })
            #expect(users["quota"] as? String == "3")
            #expect(users["percent"] as? Int == 133)
            let calls = try #require(metrics.first { $0["metric"] as? String == "api_calls" })
            #expect(calls["percent"] as? Int == 0)
        }
    }

    @Test(
        "with no subscription open now, the usage read counts from the last one's end, not the whole month: usage it billed is not shown again as unbilled"
    )
    func unbilledAfterCancellation() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            try await withCleanup(
                { try await unbilledAfterCancellation(of: tenant, client: client, pool: pool) },
                cleanup: { try await deleteUsage(of: tenant.id, pool: pool) })
        }
        await pool.close()
    }

    func unbilledAfterCancellation(of tenant: (id: String, key: String), client: some TestClientProtocol, pool: PostgresPool) async throws {
        let now = TestClock.now()
        let canceledAt = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 3600).rounded(.down) * 3600 - 3600)
        // 5 calls while subscribed (billed with its last period), 7 after it ended.
        try await record(
            [("api_calls", "5", canceledAt.addingTimeInterval(-1800)), ("api_calls", "7", canceledAt.addingTimeInterval(600))], tenant: tenant.id,
            pool: pool)
        var id = ""
        try await client.execute(
            uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
            body: ByteBuffer(
                string:
                    #"{"tenant_id": "\#(tenant.id)", "plan": "starter", "start": "\#(Self.utcDay(now.addingTimeInterval(-40 * 86_400)))T00:00:00Z"}"#)
        ) { response in
            #expect(response.status == .created)
            id = try json(response)["id"] as? String ?? ""
        }
        try await client.execute(
            uri: "/v1/subscriptions/\(id)/cancel", method: .post, headers: bearer(adminToken),
            body: ByteBuffer(string: #"{"at": "\#(RFC3339.format(canceledAt))"}"#)
        ) { response in #expect(response.status == .ok) }
        try await client.execute(uri: "/v1/usage", method: .get, headers: bearer(tenant.key)) { response in
            #expect(response.status == .ok)
            let body = try json(response)
            let period = try #require(body["period"] as? [String: Any])
            #expect(period["kind"] as? String == "calendar_month")
            // From the end of the subscription (or the month's start, in a month's first hour).
            let from = TestClock.recent(now.timeIntervalSince(canceledAt), before: now)
            #expect((period["start"] as? String).flatMap(RFC3339.parse) == from, "\(period)")
            let metrics = body["metrics"] as? [[String: Any]] ?? []
            let calls = metrics.first { $0["metric"] as? String == "api_calls" }?["value"] as? String ?? "0"
            // Before: 12, the subscription's billed 5 counted again as unbilled.
            #expect(calls == (from == canceledAt ? "7" : "0"), "\(body)")
        }
    }

    @Test(
        "usage history: a series per metric with empty buckets present, exact decimals; the CSV has one row per metric and day; another tenant gets 404"
    )
    func historyAndExport() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let other = try await createTenant(client)
            try await withCleanup(
                { try await historyAndExport(of: tenant, other: other, client: client, pool: pool) },
                cleanup: { try await deleteUsage(of: tenant.id, pool: pool) })
        }
        await pool.close()
    }

    func historyAndExport(
        of tenant: (id: String, key: String), other: (id: String, key: String), client: some TestClientProtocol, pool: PostgresPool
    ) async throws {
        let now = TestClock.now()
        let today = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        let threeDaysAgo = today.addingTimeInterval(-3 * 86_400 + 3_600)
        try await record(
            [("api_calls", "1.25", threeDaysAgo), ("api_calls", "2", threeDaysAgo.addingTimeInterval(60)), ("estimates", "7", threeDaysAgo)],
            tenant: tenant.id, pool: pool)
        try await client.execute(uri: "/v1/usage/history?range=last_30_days&granularity=day", method: .get, headers: bearer(tenant.key)) { response in
            #expect(response.status == .ok)
            let body = try json(response)
            #expect(body["granularity"] as? String == "day")
            let series = try #require(body["series"] as? [[String: Any]])
            #expect(series.map { $0["metric"] as? String } == ["api_calls", "estimates"])
            let points = try #require(series.first?["points"] as? [[String: Any]])
            #expect(points.count == 30)
            #expect(points.filter { $0["value"] as? String != "0" }.map { $0["value"] as? String } == ["3.25"])
            #expect((points[26]["start"] as? String)?.hasPrefix(Self.utcDay(threeDaysAgo)) == true)
        }
        try await client.execute(
            uri: "/v1/usage/history?tenant_id=\(tenant.id)&range=last_30_days&granularity=hour&metric=estimates", method: .get,
            headers: bearer(adminToken)
        ) { response in
            let series = try #require(try json(response)["series"] as? [[String: Any]])
            #expect(series.map { $0["metric"] as? String } == ["estimates"])
            let points = try #require(series.first?["points"] as? [[String: Any]])
            #expect(points.count >= 30 * 24)
            #expect(points.filter { $0["value"] as? String != "0" }.count == 1)
        }
        // A metric no name can be is refused (it answered a series of zeros: a typo read as no usage).
        for (query, field) in [
            ("range=last_year", "range"), ("granularity=minute", "granularity"), ("metric=API_CALLS", "metric"), ("metric=a%20b", "metric"),
            ("metric=api_calls,users", "metric"),
        ] {
            try await client.execute(uri: "/v1/usage/history?\(query)", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .badRequest)
                let named = (try json(response)["error"] as? [String: Any])?["field"] as? String
                #expect(named == field)
            }
        }
        let from = Self.utcDay(threeDaysAgo.addingTimeInterval(-86_400))
        let to = Self.utcDay(threeDaysAgo.addingTimeInterval(2 * 86_400))
        try await client.execute(uri: "/v1/usage/export.csv?from=\(from)&to=\(to)", method: .get, headers: bearer(tenant.key)) { response in
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/csv") == true)
            #expect(response.headers[.contentDisposition]?.contains("attachment") == true)
            let rows = String(buffer: response.body).split(separator: "\r\n").map(String.init)
            let day = Self.utcDay(threeDaysAgo)
            #expect(rows.first == "tenant_id,date,metric,aggregation,value")
            #expect(rows.count == 1 + 2 * 3)
            #expect(rows.contains("\(tenant.id),\(day),api_calls,sum,3.25"))
            #expect(rows.contains("\(tenant.id),\(day),estimates,sum,7"))
            #expect(rows.contains("\(tenant.id),\(from),api_calls,sum,0"))
        }
        try await client.execute(uri: "/v1/usage/export.csv?from=\(to)&to=\(from)", method: .get, headers: bearer(tenant.key)) { response in
            #expect(response.status == .badRequest)
        }
        // A midnight is a day; a time within a day is refused naming it (it was taken as the
        // day's start: usage before `from` counted, the last partial day dropped).
        try await client.execute(
            uri: "/v1/usage/export.csv?from=\(from)T00:00:00Z&to=\(to)", method: .get, headers: bearer(tenant.key)
        ) { response in #expect(response.status == .ok) }
        try await client.execute(
            uri: "/v1/usage/export.csv?from=\(from)T12:00:00Z&to=\(to)", method: .get, headers: bearer(tenant.key)
        ) { response in
            #expect(response.status == .badRequest)
            let error = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            #expect((error?["error"] as? [String: Any])?["field"] as? String == "from")
        }
        // A range over the limit names `to`; the export has no granularity to blame.
        try await client.execute(uri: "/v1/usage/export.csv?from=2000-01-01&to=2100-01-01", method: .get, headers: bearer(tenant.key)) {
            response in
            #expect(response.status == .badRequest)
            let error = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            #expect((error?["error"] as? [String: Any])?["field"] as? String == "to")
        }
        for uri in ["/v1/usage/history?tenant_id=\(tenant.id)", "/v1/usage/export.csv?tenant_id=\(tenant.id)&from=\(from)&to=\(to)"] {
            try await client.execute(uri: uri, method: .get, headers: bearer(other.key)) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test("a CSV field is quoted for a line break or quote joined to its neighbours (\\r\\n, a quote with a combining mark)")
    func csvFieldsByScalar() {
        #expect(Array(UsageCSV.field("a\r\nb").utf8) == Array("\"a\r\nb\"".utf8))
        #expect(Array(UsageCSV.field("q\"\u{0301},").utf8) == Array("\"q\"\"\u{0301},\"".utf8))
        #expect(UsageCSV.field("api_calls") == "api_calls")
    }

    @Test("ids are written in lower case in every JSON answer and accepted in any case")
    func lowerCaseIDs() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            #expect(tenant.id == tenant.id.lowercased())
            var bodies: [String] = []
            let monthStart = Self.utcDay(TestClock.recent(40 * 86_400, before: TestClock.now()))
            try await client.execute(
                uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id.uppercased())", "plan": "starter", "start": "\#(monthStart)T00:00:00Z"}"#)
            ) { response in
                #expect(response.status == .created)
                bodies.append(String(buffer: response.body))
            }
            try await client.execute(
                uri: "/v1/alerts", method: .post, headers: bearer(tenant.key),
                body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": "10", "channels": ["email"]}"#)
            ) { response in
                #expect(response.status == .created)
                bodies.append(String(buffer: response.body))
            }
            for uri in ["/v1/tenants/\(tenant.id.uppercased())", "/v1/alerts", "/v1/subscriptions", "/v1/usage", "/v1/invoices/upcoming"] {
                try await client.execute(uri: uri, method: .get, headers: bearer(tenant.key)) { response in
                    #expect(response.status == .ok, "\(uri)")
                    bodies.append(String(buffer: response.body))
                }
            }
            let uuid = try Regex("[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
            let ids = bodies.flatMap { body in body.matches(of: uuid).map { String(body[$0.range]) } }
            #expect(ids.contains(tenant.id))
            #expect(ids.count >= 6)
            #expect(ids.allSatisfy { $0 == $0.lowercased() }, "\(bodies)")
        }
    }
}
