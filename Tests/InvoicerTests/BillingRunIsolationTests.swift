import BillingEngine
import Foundation
import Invoicing
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

/// One subscription never stops a billing run: over the real invoicer and database.
@Suite("Invoicer: a subscription that cannot be planned is reported, the others are billed")
struct BillingRunIsolationTests {
    @Test("a start in year 1 fails with its reason while the run bills the others; a 70-period backlog is billed 60 per run, oldest first")
    func unplannableSubscriptions() async throws {
        let fixture = try await InvoicingFixture.make()
        let ancient = try await fixture.tenant()
        let behind = try await fixture.tenant()
        let ordinary = try await fixture.tenant()
        // Written straight to the database, as data from before the API's bounds could be.
        // 0001-01-01T00:00:00Z in the proleptic Gregorian calendar PostgreSQL uses (Foundation's formatters switch to Julian before 1582).
        let yearOne = Date(timeIntervalSince1970: -62_135_596_800)
        let ancientSubscription = try await fixture.subscribe(ancient, plan: "starter", start: yearOne)
        let behindStart = midnight(daysAgo: 70 * 31)
        try await fixture.subscribe(behind, plan: "starter", start: behindStart)
        let start = midnight(daysAgo: 40)
        try await fixture.subscribe(ordinary, plan: "starter", start: start)

        let asOf = adding(months: 1, to: start).addingTimeInterval(7200)
        let status = try #require(try await fixture.bill(asOf: asOf, tenants: [ancient, behind, ordinary]))
        #expect(status.issued == 61)
        #expect(status.failed == 1)
        let reasons = try await fixture.database.query(
            "SELECT subscription_id, error FROM billing_run_items WHERE billing_run_id = $1 AND status = 'failed'", [status.id]
        ).reduce(into: [UUID: String]()) { $0[try $1.decode(0, as: UUID.self)] = $1.text(1) }
        #expect(reasons[ancientSubscription]?.contains("before 2000") == true, "\(reasons)")
        #expect(try await fixture.invoices(ordinary).map(\.totalCents) == [29_900])
        #expect(try await fixture.invoices(ancient).isEmpty)
        let firstRun = try await fixture.invoices(behind)
        #expect(firstRun.count == 60)
        #expect(firstRun.map(\.periodStart).min() == behindStart)
        // The next run bills the rest of the backlog.
        let second = try #require(try await fixture.bill(asOf: asOf, tenants: [behind]))
        #expect(second.issued > 0)
        #expect(second.failed == 0)
        #expect(try await fixture.invoices(behind).count == 60 + second.issued)
        await fixture.close()
    }
}

/// Late usage is read incrementally: only periods that can still change.
@Suite("Invoicer: late usage of settled periods is not read again")
struct SettledPeriodTests {
    @Test(
        "a period snapshot more than 98 days after its end is settled (no event older than 97 days is counted); a recent one still gets its adjustment"
    )
    func settledPeriodsSkipped() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 200)
        try await fixture.subscribe(tenant, plan: "starter", start: start)
        // Six periods billed at once, today: the first ones ended long before their snapshot.
        let now = TestClock.now()
        try await fixture.bill(asOf: now, tenants: [tenant])
        let billed = try await fixture.invoices(tenant).sorted { $0.periodStart < $1.periodStart }
        try #require(billed.count >= 5)
        let settled = billed[0]
        let recent = try #require(billed.last)
        #expect(settled.periodEnd.addingTimeInterval(98 * 86_400) < now)
        #expect(recent.periodEnd.addingTimeInterval(98 * 86_400) > now)
        // Usage appears in both (written as rollups, as if it had been counted): 2,000 calls over starter's 1,000.
        for period in [settled, recent] {
            try await fixture.database.query(
                """
                INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
                VALUES ($1, 'api_calls', $2, 2000, 1, 2000)
                """, [tenant, period.periodStart.addingTimeInterval(3600)])
        }
        try await fixture.bill(asOf: recent.periodEnd.addingTimeInterval(35 * 86_400), tenants: [tenant])
        let next = try #require(try await fixture.invoices(tenant).max { $0.periodStart < $1.periodStart })
        let adjustments = next.lines.filter { $0.kind == "adjustment" }
        // Only the recent period is adjusted: 1,000 calls over the quota at 10¢.
        #expect(adjustments.map(\.amountCents) == [10_000])
        let recentPeriod = InvoiceText.period(Period(start: Instant(recent.periodStart), end: Instant(recent.periodEnd)))
        #expect(adjustments.first?.description.contains(recentPeriod) == true, "\(adjustments)")
        await fixture.close()
    }
}
