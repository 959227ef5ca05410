import Foundation
import TallyStore
import TallyTestSupport
import Testing

/// Plans of the catalog's charge models (SPEC §2.1) billed through the real pipeline:
/// usage over AMQP, counted by the aggregator, billed by the Invoicer, read back to the
/// cent. Each test defines plans with codes of its own.
@Suite("Invoicer: catalog plans through the real pipeline")
struct CatalogPipelineTests {
    /// A plan of this test's own: `charges` priced in USD, monthly.
    static func definePlan(_ fixture: InvoicingFixture, base: Int64, charges: [StoredCharge]) async throws -> String {
        let code = "test-catalog-\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await CatalogStore(pool: fixture.database).create(
            StoredPlanVersion(
                code: code, version: 0, name: "Catalog test", currency: "usd", interval: "month", baseCents: base, trialDays: 0,
                charges: charges))
        return code
    }

    /// API calls: the first 1,000 free, then to 10,000 at 0.5¢ plus $5.00 once, then 0.25¢.
    static let graduatedCalls = StoredCharge(
        metric: "api_calls", enforcement: "soft", quota: nil, model: "graduated",
        tiers: [
            .init(upTo: "1000", unitPrice: "0", flatCents: 0), .init(upTo: "10000", unitPrice: "0.5", flatCents: 500),
            .init(upTo: nil, unitPrice: "0.25", flatCents: 0),
        ])

    @Test("a graduated plan: a line per tier used; late usage is charge(new) − charge(billed) on the next invoice")
    func graduated() async throws {
        let fixture = try await InvoicingFixture.make()
        let plan = try await Self.definePlan(fixture, base: 1_000, charges: [Self.graduatedCalls])
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 70)
        try await fixture.subscribe(tenant, plan: plan, start: start)
        let at = start.addingTimeInterval(2 * 86_400)
        let events = ["5000", "5000", "2000.5"].enumerated().map {
            usageEvent("calls-\($0.offset)", tenant: tenant, metric: "api_calls", quantity: $0.element, at: at)
        }
        try await fixture.sendUsage(events, tenant: tenant, expected: 3)
        let end = adding(months: 1, to: start)
        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        #expect(invoice.lines.map(\.kind) == ["base", "overage", "overage", "overage"])
        // 1,000 free; 9,000 × 0.5¢ + $5.00 flat; 2,000.5 × 0.25¢ = 500.125 → 501¢.
        #expect(invoice.lines.map(\.amountCents) == [1_000, 0, 5_000, 501])
        #expect(invoice.lines.map(\.quantity) == ["1", "1000", "9000", "2000.5"])
        #expect(invoice.lines.map(\.unitPriceCents) == ["1000", "0", "0.5", "0.25"])
        #expect(invoice.lines[2].description == "api_calls: 12,000.5 used, tier 2 (1,000–10,000), plus $5.00 flat")
        #expect(invoice.subtotalCents == 6_501)

        // 1,000 more calls for the invoiced period: 13,000.5 at the top tier is 751¢, 250 more.
        try await fixture.sendUsage(
            [usageEvent("late", tenant: tenant, metric: "api_calls", quantity: "1000", at: at)], tenant: tenant, expected: 4)
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        let next = try #require(try await fixture.invoices(tenant).first)
        #expect(next.periodStart == end)
        #expect(next.lines.map(\.kind) == ["base", "adjustment"])
        #expect(next.lines.last?.amountCents == 250)
        #expect(next.lines.last.map { ($0.quantity, $0.unitPriceCents) } ?? ("", "") == ("1", "250"))
        await fixture.close()
    }

    @Test("volume and package charges: every unit at the tier the value falls in; whole packages above what is included")
    func volumeAndPackage() async throws {
        let fixture = try await InvoicingFixture.make()
        let plan = try await Self.definePlan(
            fixture, base: 0,
            charges: [
                StoredCharge(
                    metric: "users", enforcement: "soft", quota: "20", model: "volume",
                    tiers: [.init(upTo: "10", unitPrice: "1000", flatCents: 0), .init(upTo: nil, unitPrice: "800", flatCents: 2_000)]),
                StoredCharge(metric: "estimates", enforcement: "soft", quota: nil, model: "package", included: "10", size: "25", priceCents: 1_500),
            ])
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 70)
        try await fixture.subscribe(tenant, plan: plan, start: start)
        let at = start.addingTimeInterval(3 * 86_400)
        // users is a max: 12 seats; estimates a sum: 61, of which 51 billed in 3 packages of 25.
        let events =
            [usageEvent("seats-a", tenant: tenant, metric: "users", quantity: "7", at: at)]
            + [usageEvent("seats-b", tenant: tenant, metric: "users", quantity: "12", at: at)]
            + (0..<61).map { usageEvent("estimate-\($0)", tenant: tenant, metric: "estimates", at: at) }
        try await fixture.sendUsage(events, tenant: tenant, expected: events.count)
        try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        #expect(invoice.lines.map(\.metric) == [nil, "estimates", "users"])
        #expect(invoice.lines.map(\.amountCents) == [0, 4_500, 11_600])  // 3 × $15; 12 × $8 + $20
        #expect(invoice.lines.map(\.quantity) == ["1", "3", "12"])
        #expect(invoice.lines[1].description == "estimates: 61 used, 10 included, 51 billed in packages of 25")
        await fixture.close()
    }

    @Test("an upgrade from the seeded standard plan to a graduated one mid-period: the graduated plan prices the whole period's usage")
    func upgradeToGraduated() async throws {
        let fixture = try await InvoicingFixture.make()
        let plan = try await Self.definePlan(fixture, base: 49_900, charges: [Self.graduatedCalls])
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 75)
        let subscription = try await fixture.subscribe(tenant, plan: "starter", start: start)
        let upgradeAt = start.addingTimeInterval(10 * 86_400)
        try await fixture.change(subscription, to: plan, at: upgradeAt, kind: "upgrade")
        let events = [
            usageEvent("before", tenant: tenant, metric: "api_calls", quantity: "3000", at: start.addingTimeInterval(86_400)),
            usageEvent("after", tenant: tenant, metric: "api_calls", quantity: "2000", at: upgradeAt.addingTimeInterval(86_400)),
        ]
        try await fixture.sendUsage(events, tenant: tenant, expected: 2)
        let end = adding(months: 1, to: start)
        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        let total = Int64(end.timeIntervalSince(start))
        let before = Int64(upgradeAt.timeIntervalSince(start))
        #expect(invoice.lines.map(\.kind) == ["base", "base", "overage", "overage"])
        // 5,000 calls on the graduated plan: 1,000 free, 4,000 × 0.5¢ + $5.00; none against Starter's quota.
        #expect(invoice.lines.map(\.amountCents) == [halfUp(29_900 * before, total), halfUp(49_900 * (total - before), total), 0, 2_500])
        await fixture.close()
    }

    @Test("a subscription migrated to version 2 during a period keeps version 1 until its next period starts")
    func migrationToVersionTwo() async throws {
        let fixture = try await InvoicingFixture.make()
        let calls = { (price: String) in
            StoredCharge(metric: "api_calls", enforcement: "soft", quota: nil, model: "standard", included: "0", unitPrice: price)
        }
        let plan = try await Self.definePlan(fixture, base: 1_000, charges: [calls("1")])
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 70)
        let subscription = try await fixture.subscribe(tenant, plan: plan, start: start)
        let other = try await fixture.tenant()
        let otherSubscription = try await fixture.subscribe(other, plan: plan, start: start)
        // Version 2 comes after the subscriptions, which stay on version 1.
        let store = CatalogStore(pool: fixture.database)
        _ = try await store.addVersion(
            StoredPlanVersion(
                code: plan, version: 0, name: "Catalog test", currency: "usd", interval: "month", baseCents: 2_000, trialDays: 0,
                charges: [calls("2")]))
        let firstEnd = adding(months: 1, to: start)
        let events =
            (0..<100).map { usageEvent("first-\($0)", tenant: tenant, metric: "api_calls", at: start.addingTimeInterval(86_400)) }
            + (0..<50).map { usageEvent("second-\($0)", tenant: tenant, metric: "api_calls", at: firstEnd.addingTimeInterval(86_400)) }
        try await fixture.sendUsage(events, tenant: tenant, expected: 150)
        // Five days into the first period: a dry run says what would move, and changes nothing.
        let asked = start.addingTimeInterval(5 * 86_400)
        let dry = try await store.migrate(code: plan, from: 1, to: 2, tenant: tenant, at: asked, dryRun: true)
        #expect(dry.moved.map(\.subscriptionID) == [subscription] && dry.moved.first?.effectiveAt == firstEnd)
        // The first period's 100 calls: 1,000 + 100 on version 1, 2,000 + 200 on version 2.
        #expect(dry.moved.first.map { [$0.currentChargeCents, $0.newChargeCents, $0.differenceCents] } == [1_100, 2_200, 1_100])
        let moved = try await store.migrate(code: plan, from: 1, to: 2, tenant: tenant, at: asked, dryRun: false)
        #expect(moved.moved.count == 1)
        // Asked again: already scheduled, not moved twice.
        let again = try await store.migrate(code: plan, from: 1, to: 2, tenant: tenant, at: asked, dryRun: false)
        #expect(again.moved.isEmpty && again.skipped.map(\.subscriptionID) == [subscription])
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoices = try await fixture.invoices(tenant).sorted { $0.periodStart < $1.periodStart }
        try #require(invoices.count == 2)
        #expect(invoices[0].lines.map(\.amountCents) == [1_000, 100])  // version 1 to the end of its period
        #expect(invoices[1].lines.map(\.amountCents) == [2_000, 100])  // version 2: 50 calls at 2¢
        #expect(invoices[1].lines.map(\.kind) == ["base", "overage"])  // a whole period on v2, not a prorated segment
        // The other tenant, still on version 1, asked for as of the first period once both are
        // invoiced: the period it would start in is billed already, so it is not moved.
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [other])
        let late = try await store.migrate(code: plan, from: 1, to: 2, tenant: other, at: asked, dryRun: false)
        #expect(late.moved.isEmpty && late.skipped.map(\.subscriptionID) == [otherSubscription])
        #expect(late.skipped.first?.reason.contains("already invoiced") == true)
        await fixture.close()
    }

    @Test(
        "EUR and JPY plans: the first subscription sets the tenant's currency, invoices carry it in its minor unit; a plan of another currency is refused",
        arguments: [("eur", 1_000 as Int64, "1", [1_000, 250] as [Int64]), ("jpy", 1_500, "2", [1_500, 500])])
    func currencies(currency: String, base: Int64, price: String, amounts: [Int64]) async throws {
        let fixture = try await InvoicingFixture.make()
        let code = "test-\(currency)-\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await CatalogStore(pool: fixture.database).create(
            StoredPlanVersion(
                code: code, version: 0, name: "In \(currency)", currency: currency, interval: "month", baseCents: base, trialDays: 0,
                charges: [StoredCharge(metric: "api_calls", enforcement: "soft", quota: nil, model: "standard", included: "0", unitPrice: price)]))
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 70)
        let subscriptions = SubscriptionStore(pool: fixture.database)
        let subscription = try await subscriptions.create(tenant: tenant, plan: code, start: start, trialDays: nil, grant: .byOperator, now: start)
        // Another currency on the same tenant: refused, naming the plan.
        do {
            _ = try await subscriptions.changePlan(id: subscription.id, to: "enterprise", at: start.addingTimeInterval(86_400), now: start)
            Issue.record("a USD plan was accepted for a tenant billing in \(currency)")
        } catch let refusal as SubscriptionRefusal {
            #expect(refusal.kind == .conflict && refusal.field == "plan")
        }
        let events = (0..<250).map {
            usageEvent("call-\($0)", tenant: tenant, metric: "api_calls", at: start.addingTimeInterval(86_400 + Double($0)))
        }
        try await fixture.sendUsage(events, tenant: tenant, expected: 250)
        try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        #expect(invoice.currency == currency)
        #expect(invoice.lines.map(\.amountCents) == amounts)  // the base, and 250 calls at the plan's price, in its minor unit
        await fixture.close()
    }
}
