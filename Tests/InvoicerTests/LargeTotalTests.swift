import BillingEngine
import CurlClient
import Foundation
import Invoicing
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

/// Period totals are not events: one event is at most 1e12, a period's sum may be far
/// above it. Over the running aggregator, Billing API and invoicers.
@Suite("Invoicer: period totals above one event's bound")
struct LargeTotalTests {
    /// `GET /v1/usage` of the running Billing API, as the admin; the api_calls value.
    func usageValue(tenant: UUID, from: Date, to: Date) async throws -> (status: Int, value: String?) {
        let url =
            TestEnvironment.apiURL + "/v1/usage?tenant_id=\(tenant.uuidString.lowercased())"
            + "&from=\(RFC3339.format(from))&to=\(RFC3339.format(to))"
        let response = try await HTTPClient().send(.init(url: url, headers: ["Authorization": "Bearer \(TestEnvironment.adminToken)"]))
        guard response.status == 200 else { return (response.status, nil) }
        let body = try JSONSerialization.jsonObject(with: response.body) as? [String: Any]
        let metrics = body?["metrics"] as? [[String: Any]] ?? []
        return (200, metrics.first { $0["metric"] as? String == "api_calls" }?["value"] as? String)
    }

    @Test("a tenant past 1e12 in a period is counted (with the other tenant of its message), read and billed to the cent")
    func totalAboveOneEventsBound() async throws {
        let fixture = try await InvoicingFixture.make()
        let large = try await fixture.tenant()
        let neighbour = try await fixture.tenant()
        let start = midnight(daysAgo: 40)
        try await fixture.subscribe(large, plan: "starter", start: start)
        try await fixture.subscribe(neighbour, plan: "starter", start: start)
        let inPeriod = start.addingTimeInterval(86_400)
        // One message: two maximal events and half a call for one tenant, one call for the other.
        try await fixture.sendUsage(
            [
                usageEvent("max-1", tenant: large, metric: "api_calls", quantity: "1000000000000", at: inPeriod),
                usageEvent("max-2", tenant: large, metric: "api_calls", quantity: "1e12", at: inPeriod),
                usageEvent("half", tenant: large, metric: "api_calls", quantity: "\"0.5\"", at: inPeriod),
                usageEvent("one", tenant: neighbour, metric: "api_calls", at: inPeriod),
            ],
            tenant: large, expected: 3)
        try await fixture.waitUntil("the neighbour's event counted") {
            try await fixture.database.query("SELECT count(*) FROM usage_events WHERE tenant_id = $1", [neighbour])[0].decode(0, as: Int.self) == 1
        }
        // A later batch for the same tenant is counted too (its evaluation reads the 2e12 total).
        try await fixture.sendUsage(
            [usageEvent("later", tenant: large, metric: "api_calls", quantity: "2", at: inPeriod)], tenant: large, expected: 4)

        let end = adding(months: 1, to: start)
        let read = try await usageValue(tenant: large, from: start, to: end)
        #expect(read.status == 200)
        #expect(read.value == "2000000000002.5")

        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [large, neighbour])
        let invoice = try #require(try await fixture.invoices(large).first)
        // ceil((2,000,000,000,002.5 − 1,000) × 10¢) = 19,999,999,990,025¢.
        #expect(invoice.lines.map(\.amountCents) == [29_900, 19_999_999_990_025])
        #expect(invoice.lines.last?.quantity == "1999999999002.5")
        #expect(invoice.totalCents == 29_900 + 19_999_999_990_025)
        #expect(try await fixture.invoices(neighbour).first?.totalCents == 29_900)
        await fixture.close()
    }

    @Test("an amount beyond 64-bit cents fails that invoice with its reason; the run bills the other tenant")
    func amountBeyondCents() async throws {
        let fixture = try await InvoicingFixture.make()
        let runaway = try await fixture.tenant()
        let neighbour = try await fixture.tenant()
        let start = midnight(daysAgo: 40)
        try await fixture.subscribe(runaway, plan: "starter", start: start)
        try await fixture.subscribe(neighbour, plan: "starter", start: start)
        // 1e30 calls in one hour, as the rollups would hold them after ~1e18 maximal events.
        try await fixture.database.query(
            """
            INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
            VALUES ($1, 'api_calls', $2, 1e30, 1000000000000000000, 1e12)
            """, [runaway, start.addingTimeInterval(86_400)])
        let status = try #require(try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [runaway, neighbour]))
        #expect(status.issued == 1)
        #expect(status.failed == 1)
        let reason = try await fixture.database.query(
            "SELECT error FROM billing_run_items i JOIN subscriptions s ON s.id = i.subscription_id WHERE s.tenant_id = $1 AND i.status = 'failed'",
            [runaway]
        ).first?.text(0)
        #expect(reason?.contains("exceeds what an invoice can hold") == true, "\(reason ?? "no failed item")")
        #expect(try await fixture.invoices(runaway).isEmpty)
        #expect(try await fixture.invoices(neighbour).first?.totalCents == 29_900)
        // The open period's upcoming invoice says why instead of answering 500.
        let response = try await HTTPClient().send(
            .init(
                url: TestEnvironment.apiURL
                    + "/v1/invoices/upcoming?tenant_id=\(runaway.uuidString.lowercased())&at=\(RFC3339.format(start.addingTimeInterval(86_400 * 2)))",
                headers: ["Authorization": "Bearer \(TestEnvironment.adminToken)"]))
        #expect(response.status == 422)
        #expect(String(decoding: response.body, as: UTF8.self).contains("AMOUNT_OUT_OF_RANGE"))
        // So does the usage so far (GET /v1/usage answered 500); with a range, the values read.
        let hourAgo = TestClock.now().addingTimeInterval(-3600)
        try await fixture.database.query(
            """
            INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
            VALUES ($1, 'api_calls', date_trunc('hour', $2::timestamptz), 1e30, 1000000000000000000, 1e12)
            """, [runaway, hourAgo])
        let usageURL = TestEnvironment.apiURL + "/v1/usage?tenant_id=\(runaway.uuidString.lowercased())"
        let admin: HTTPClient.Headers = ["Authorization": "Bearer \(TestEnvironment.adminToken)"]
        let usage = try await HTTPClient().send(.init(url: usageURL, headers: admin))
        #expect(usage.status == 422, "\(String(decoding: usage.body, as: UTF8.self))")
        #expect(String(decoding: usage.body, as: UTF8.self).contains("AMOUNT_OUT_OF_RANGE"))
        let range = "&from=\(RFC3339.format(hourAgo.addingTimeInterval(-3600)))&to=\(RFC3339.format(TestClock.now()))"
        let values = try await HTTPClient().send(.init(url: usageURL + range, headers: admin))
        #expect(values.status == 200, "\(String(decoding: values.body, as: UTF8.self))")
        // Finance's page of every tenant's charge so far: the runaway's is unpriced, the
        // others' still computed (the page answered 500 for everyone).
        let charges = try await fixture.database.withTransaction(isolation: .repeatableRead) {
            try UsageStatement.charges(of: [runaway, neighbour], asOf: Instant(TestClock.now()), on: $0)
        }
        #expect(charges[runaway] != nil && charges[runaway]?.total == nil)
        #expect(charges[neighbour]?.total != nil)
        try await fixture.database.query("DELETE FROM usage_rollups WHERE tenant_id = $1", [runaway])
        await fixture.close()
    }
}
