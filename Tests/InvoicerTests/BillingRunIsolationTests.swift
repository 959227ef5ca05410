import Foundation
import Invoicing
import PostgresClient
import TallyTestSupport
import Testing

/// One subscription never stops a billing run: over the real invoicer and database.
@Suite("Invoicer: a subscription that cannot be planned is reported, the others are billed")
struct BillingRunIsolationTests {
    @Test("a start in year 1 and one with more than 60 due periods fail with their reasons; the run bills the other tenant")
    func unplannableSubscriptions() async throws {
        let fixture = try await InvoicingFixture.make()
        let ancient = try await fixture.tenant()
        let behind = try await fixture.tenant()
        let ordinary = try await fixture.tenant()
        // Written straight to the database, as data from before the API's bounds could be.
        // 0001-01-01T00:00:00Z in the proleptic Gregorian calendar PostgreSQL uses (Foundation's formatters switch to Julian before 1582).
        let yearOne = Date(timeIntervalSince1970: -62_135_596_800)
        let ancientSubscription = try await fixture.subscribe(ancient, plan: "starter", start: yearOne)
        let behindSubscription = try await fixture.subscribe(behind, plan: "starter", start: midnight(daysAgo: 70 * 31))
        let start = midnight(daysAgo: 40)
        try await fixture.subscribe(ordinary, plan: "starter", start: start)

        let status = try #require(try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [ancient, behind, ordinary]))
        #expect(status.issued == 1)
        #expect(status.failed == 2)
        let reasons = try await fixture.database.query(
            "SELECT subscription_id, error FROM billing_run_items WHERE billing_run_id = $1 AND status = 'failed'", [status.id]
        ).reduce(into: [UUID: String]()) { $0[try $1.decode(0, as: UUID.self)] = $1.text(1) }
        #expect(reasons[ancientSubscription]?.contains("before 2000") == true, "\(reasons)")
        #expect(reasons[behindSubscription]?.contains("more than 60 periods") == true, "\(reasons)")
        #expect(try await fixture.invoices(ordinary).map(\.totalCents) == [29_900])
        #expect(try await fixture.invoices(ancient).isEmpty)
        #expect(try await fixture.invoices(behind).isEmpty)
        await fixture.close()
    }
}
