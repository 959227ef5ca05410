import BillingEngine
import Foundation
import Invoicing
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

/// Invoices through the real pipeline: usage over AMQP, counted by the aggregator,
/// billed by `invoicer bill` and the running `invoicer run`, read back to the cent.
@Suite("Invoicer: invoices through the real pipeline")
struct InvoiceScenarioPipelineTests {
    @Test("starter over quota with seats and 7.25 % tax, billed once; late usage becomes an adjustment line on the next invoice")
    func starterOverQuotaThenLateUsage() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant(taxBps: 725)
        // A period that ended a month ago: [start, start + 1 month).
        let day: TimeInterval = 86_400
        let start = Date(timeIntervalSince1970: ((TestClock.now().timeIntervalSince1970 - 70 * day) / day).rounded(.down) * day)
        try await fixture.subscribe(tenant, plan: "starter", start: start)
        let inPeriod = start.addingTimeInterval(2 * day)
        var events = (0..<1500).map { usageEvent("call-\($0)", tenant: tenant, metric: "api_calls", at: inPeriod.addingTimeInterval(Double($0))) }
        events += (0..<40).map { usageEvent("estimate-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }
        events += [2, 5, 4].enumerated().map {
            usageEvent("seats-\($0.offset)", tenant: tenant, metric: "users", quantity: "\($0.element)", at: inPeriod)
        }
        try await fixture.sendUsage(events, tenant: tenant, expected: events.count)

        var timeZoned = Calendar(identifier: .gregorian)
        timeZoned.timeZone = TimeZone(identifier: "UTC")!
        let end = timeZoned.date(byAdding: .month, value: 1, to: start)!
        let run = try await fixture.bill(asOf: end.addingTimeInterval(2 * 3600), tenants: [tenant])
        #expect(run?.failed == 0)
        var invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 1)
        let invoice = invoices[0]
        #expect(invoice.lines.map(\.kind) == ["base", "overage", "overage"])
        #expect(invoice.lines.map(\.amountCents) == [29_900, 5_000, 2_000])
        #expect(invoice.lines.map(\.metric) == [nil, "api_calls", "users"])
        #expect(invoice.lines.map(\.quantity) == ["1", "500", "2"])
        #expect(invoice.lines.map(\.unitPriceCents) == ["29900", "10", "1000"])
        #expect(invoice.subtotalCents == 36_900)
        #expect(invoice.taxCents == 2_675)  // 36,900 × 7.25 % = 2,675.25 → 2,675
        #expect(invoice.totalCents == 39_575)
        let year = timeZoned.component(.year, from: end.addingTimeInterval(2 * 3600))
        #expect(invoice.number.hasPrefix("INV-\(year)-"))
        #expect(invoice.periodStart == start && invoice.periodEnd == end)
        #expect(invoice.lines.map(\.description).dropFirst() == ["api_calls: 1,500 used, 1,000 included", "users: 5 used, 3 included"])
        #expect(invoice.dueAt.timeIntervalSince(invoice.issuedAt) == 30 * 86_400)  // the default payment terms

        // Billing again at the same instant issues nothing new.
        try await fixture.bill(asOf: end.addingTimeInterval(2 * 3600), tenants: [tenant])
        #expect(try await fixture.invoices(tenant).count == 1)

        // 100 more calls arrive for the invoiced period: the next invoice bills them as an adjustment.
        let late = (0..<100).map { usageEvent("late-\($0)", tenant: tenant, metric: "api_calls", at: inPeriod.addingTimeInterval(5000)) }
        try await fixture.sendUsage(late, tenant: tenant, expected: events.count + 100)
        let nextEnd = timeZoned.date(byAdding: .month, value: 2, to: start)!
        try await fixture.bill(asOf: nextEnd.addingTimeInterval(2 * 3600), tenants: [tenant])
        invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 2)
        let next = invoices[0]
        #expect(next.periodStart == end)
        #expect(next.lines.map(\.kind) == ["base", "adjustment"])
        #expect(next.lines.last?.amountCents == 1_000)  // charge(600 over) − charge(500 over) at 10¢
        #expect(next.lines.last?.metric == "api_calls")
        #expect(next.lines.last?.quantity == "100")  // 600 over instead of 500: 100 more billable calls …
        #expect(next.lines.last?.unitPriceCents == "10")  // … at 10¢ = $10.00
        #expect(next.lines.last?.description.hasSuffix("— 1,600 used, 1,500 billed before") == true)
        #expect(next.subtotalCents == 30_900)
        await fixture.close()
    }

    @Test(
        "a period invoiced early (a run at a later as_of): the upcoming invoice is the next period's, carrying the usage that arrives since as an adjustment"
    )
    func upcomingAfterEarlyInvoice() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 10)
        let end = adding(months: 1, to: start)
        try await fixture.subscribe(tenant, plan: "starter", start: start)
        let before = (0..<1200).map { usageEvent("early-\($0)", tenant: tenant, metric: "api_calls", at: start.addingTimeInterval(Double($0))) }
        try await fixture.sendUsage(before, tenant: tenant, expected: before.count)
        try await fixture.bill(asOf: end.addingTimeInterval(2 * 3600), tenants: [tenant])
        try #require(try await fixture.invoices(tenant).map(\.periodStart) == [start])
        // 100 calls more in the period already invoiced (its end is still ahead).
        let now = TestClock.now()
        let after = (0..<100).map { usageEvent("since-\($0)", tenant: tenant, metric: "api_calls", at: now.addingTimeInterval(-60)) }
        try await fixture.sendUsage(after, tenant: tenant, expected: before.count + after.count)
        let upcoming = try #require(try await fixture.database.withTransaction { try UpcomingInvoice.compute(tenant: tenant, at: now, on: $0) })
        // It showed the invoiced period again, its overage 3,000 as if not billed.
        #expect(upcoming.periodStart == end && upcoming.periodEnd == adding(months: 2, to: start))
        #expect(upcoming.lines.map(\.kind) == ["base", "adjustment"])
        #expect(upcoming.lines.map(\.amountCents) == [29_900, 1_000])  // charge(300 over) − charge(200 over) at 10¢
        #expect(upcoming.totalCents == 30_900)
        // Finance's page agrees: the tenant's charge so far is that invoice's total.
        let charge = try await fixture.database.withTransaction { try UsageStatement.charges(of: [tenant], asOf: Instant(now), on: $0) }[tenant]
        #expect(charge?.total?.value == 30_900 && charge?.period.start.date == end)
        await fixture.close()
    }

    @Test("a mid-period upgrade with 40 estimates before and 60 after: two prorated base lines, no overage against the old plan")
    func upgradeMidPeriod() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 75)
        let subscription = try await fixture.subscribe(tenant, plan: "starter", start: start)
        let upgradeAt = start.addingTimeInterval(10 * 86_400)
        try await fixture.change(subscription, to: "professional", at: upgradeAt, kind: "upgrade")
        let events =
            (0..<40).map { usageEvent("before-\($0)", tenant: tenant, metric: "estimates", at: start.addingTimeInterval(2 * 86_400)) }
            + (0..<60).map { usageEvent("after-\($0)", tenant: tenant, metric: "estimates", at: start.addingTimeInterval(15 * 86_400)) }
        try await fixture.sendUsage(events, tenant: tenant, expected: 100)
        let end = adding(months: 1, to: start)
        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        let total = Int64(end.timeIntervalSince(start))
        let before = Int64(upgradeAt.timeIntervalSince(start))
        #expect(invoice.lines.map(\.kind) == ["base", "base"])
        #expect(invoice.lines.map(\.amountCents) == [halfUp(29_900 * before, total), halfUp(99_900 * (total - before), total)])
        // One unit at each segment's prorated price, so each row adds up.
        #expect(invoice.lines.map(\.quantity) == ["1", "1"])
        #expect(invoice.lines.map(\.unitPriceCents) == invoice.lines.map { String($0.amountCents) })
        #expect(invoice.lines.allSatisfy { $0.description.hasSuffix("(prorated)") })
        #expect(invoice.subtotalCents == invoice.lines.reduce(0) { $0 + $1.amountCents })
        await fixture.close()
    }

    @Test("a 7-day trial: its usage is recorded and never billed; the first period starts at the trial's end")
    func trial() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 60)
        let trialEnd = start.addingTimeInterval(7 * 86_400)
        try await fixture.subscribe(tenant, plan: "starter", start: start, trialEnd: trialEnd)
        let events =
            (0..<900).map { usageEvent("trial-\($0)", tenant: tenant, metric: "api_calls", at: start.addingTimeInterval(86_400)) }
            + (0..<1200).map { usageEvent("paid-\($0)", tenant: tenant, metric: "api_calls", at: trialEnd.addingTimeInterval(86_400)) }
        try await fixture.sendUsage(events, tenant: tenant, expected: 2100)
        let end = adding(months: 1, to: trialEnd)
        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [tenant])
        let invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 1)
        #expect(invoices[0].periodStart == trialEnd && invoices[0].periodEnd == end)
        #expect(invoices[0].lines.map(\.amountCents) == [29_900, 2_000])  // 1200 − 1000 calls at 10¢; the trial's 900 are free
        await fixture.close()
    }

    @Test("cancel now: the period ends at the cancellation and is billed as a shorter period")
    func cancelNow() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 60)
        let endsAt = start.addingTimeInterval(15 * 86_400)
        try await fixture.subscribe(tenant, plan: "starter", start: start, endsAt: endsAt)
        let events = (0..<1300).map { usageEvent("call-\($0)", tenant: tenant, metric: "api_calls", at: start.addingTimeInterval(86_400)) }
        try await fixture.sendUsage(events, tenant: tenant, expected: 1300)
        try await fixture.bill(asOf: endsAt.addingTimeInterval(7200), tenants: [tenant])
        let invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 1)
        let full = Int64(adding(months: 1, to: start).timeIntervalSince(start))
        #expect(invoices[0].periodEnd == endsAt)
        #expect(invoices[0].lines.map(\.amountCents) == [halfUp(29_900 * 15 * 86_400, full), 3_000])
        await fixture.close()
    }

    @Test("professional and enterprise plans with fractional quantities: overage rounds up per line, Unlimited never bills overage")
    func plansAndFractions() async throws {
        let fixture = try await InvoicingFixture.make()
        let start = midnight(daysAgo: 50)
        let end = adding(months: 1, to: start)
        let inPeriod = start.addingTimeInterval(3 * 86_400)
        let professional = try await fixture.tenant()
        try await fixture.subscribe(professional, plan: "professional", start: start)
        // 200.5 estimates (quota 200) at 400¢ → ceil(0.5 × 400) = 200¢; 10000.0003 calls at 8¢ → ceil(0.0024) = 1¢.
        let proEvents = [
            usageEvent("e1", tenant: professional, metric: "estimates", quantity: "\"150.25\"", at: inPeriod),
            usageEvent("e2", tenant: professional, metric: "estimates", quantity: "\"50.25\"", at: inPeriod),
            usageEvent("c1", tenant: professional, metric: "api_calls", quantity: "\"10000.0003\"", at: inPeriod),
        ]
        try await fixture.sendUsage(proEvents, tenant: professional, expected: 3)
        let enterprise = try await fixture.tenant()
        try await fixture.subscribe(enterprise, plan: "enterprise", start: start)
        try await fixture.sendUsage(
            [usageEvent("big", tenant: enterprise, metric: "api_calls", quantity: "\"5000000.5\"", at: inPeriod)], tenant: enterprise, expected: 1)
        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [professional, enterprise])
        let pro = try #require(try await fixture.invoices(professional).first)
        #expect(pro.lines.map(\.kind) == ["base", "overage", "overage"])
        #expect(pro.lines.map(\.metric) == [nil, "api_calls", "estimates"])
        #expect(pro.lines.map(\.quantity) == ["1", "0.0003", "0.5"])
        #expect(pro.lines.map(\.amountCents) == [99_900, 1, 200])
        let big = try #require(try await fixture.invoices(enterprise).first)
        #expect(big.lines.map(\.amountCents) == [299_900])
        await fixture.close()
    }

    @Test("an anchor on the 31st: the next period ends on the month's last day, re-derived from the anchor")
    func thirtyFirstAnchor() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        // The most recent 31st at least 10 days ago (within the 90 days a worker accepts).
        var anchor = midnight(daysAgo: 10)
        while calendar.component(.day, from: anchor) != 31 { anchor = anchor.addingTimeInterval(-86_400) }
        try await fixture.subscribe(tenant, plan: "starter", start: anchor)
        try await fixture.sendUsage(
            [usageEvent("one", tenant: tenant, metric: "api_calls", at: anchor.addingTimeInterval(3600))], tenant: tenant, expected: 1)
        let next = calendar.date(byAdding: .month, value: 1, to: anchor)!  // clamped to the month's last day
        let daysInNextMonth = try #require(calendar.range(of: .day, in: .month, for: next)).count
        #expect(calendar.component(.day, from: next) == min(31, daysInNextMonth))
        try await fixture.bill(asOf: next.addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        #expect(invoice.periodStart == anchor)
        #expect(invoice.periodEnd == next)
        #expect(invoice.lines.map(\.amountCents) == [29_900])
        await fixture.close()
    }

    @Test("a downgrade takes effect at the next period start; the period it was asked in is billed on the old plan")
    func downgradeAtNextPeriod() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 80)
        let subscription = try await fixture.subscribe(tenant, plan: "professional", start: start)
        let first = adding(months: 1, to: start)
        try await fixture.change(subscription, to: "starter", at: first, kind: "downgrade")
        // 150 estimates in each period: within professional's 200, over starter's 50 by 100 at 500¢.
        let events =
            (0..<150).map { usageEvent("a\($0)", tenant: tenant, metric: "estimates", at: start.addingTimeInterval(86_400)) }
            + (0..<150).map { usageEvent("b\($0)", tenant: tenant, metric: "estimates", at: first.addingTimeInterval(86_400)) }
        try await fixture.sendUsage(events, tenant: tenant, expected: 300)
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoices = try await fixture.invoices(tenant).sorted { $0.periodStart < $1.periodStart }
        try #require(invoices.count == 2)
        #expect(invoices[0].lines.map(\.amountCents) == [99_900])
        #expect(invoices[1].lines.map(\.amountCents) == [29_900, 50_000])
        await fixture.close()
    }

    @Test("late usage after the subscription ended: the next run issues an adjustment invoice, once")
    func adjustmentInvoiceAfterCancellation() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant(taxBps: 725)
        let start = midnight(daysAgo: 70)
        let end = adding(months: 1, to: start)
        let subscription = try await fixture.subscribe(tenant, plan: "starter", start: start, endsAt: end)
        let inPeriod = start.addingTimeInterval(86_400)
        let onTime = (0..<40).map { usageEvent("estimate-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }
        try await fixture.sendUsage(onTime, tenant: tenant, expected: 40)
        try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: [tenant])
        var invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 1)
        #expect(invoices[0].lines.map(\.amountCents) == [29_900])
        // Renamed after it was issued (PATCH /v1/tenants): the issued invoice keeps the name
        // and address it was issued to; the next one takes the new name.
        let issuedTo = try await fixture.database.query("SELECT name, billing_email FROM tenants WHERE id = $1", [tenant])[0]
        #expect(invoices[0].billedTo == .init(name: try issuedTo.decode(0), email: try issuedTo.decode(1)))
        try await fixture.database.query("UPDATE tenants SET name = 'Renamed Tenant' WHERE id = $1", [tenant])

        // 30 more estimates of that period arrive after it was invoiced: 70 of a quota of 50.
        let late = (40..<70).map { usageEvent("estimate-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }
        try await fixture.sendUsage(late, tenant: tenant, expected: 70)
        let run = try await fixture.bill(asOf: end.addingTimeInterval(3 * 86_400), tenants: [tenant])
        #expect(run?.due == 1)
        #expect(run?.issued == 1)
        invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 2)
        let adjustment = try #require(invoices.first { $0.kind == "adjustment" })
        #expect(adjustment.subscriptionID == subscription)
        #expect(adjustment.lines.map(\.kind) == ["adjustment"])
        #expect(adjustment.lines.map(\.metric) == ["estimates"])
        #expect(adjustment.lines.map(\.amountCents) == [10_000])  // 20 over × $5
        #expect(adjustment.lines.map(\.quantity) == ["20"])  // 70 − 50 billable estimates; 40 were billed, all within the quota
        #expect(adjustment.lines.map(\.unitPriceCents) == ["500"])
        #expect(adjustment.lines[0].description.hasSuffix("— 70 used, 40 billed before"))
        #expect(adjustment.subtotalCents == 10_000)
        #expect(adjustment.taxCents == 725)
        #expect(adjustment.totalCents == 10_725)
        #expect(adjustment.periodStart == start)
        #expect(adjustment.periodEnd == end)
        #expect(adjustment.number != invoices.first { $0.kind == "period" }?.number)
        #expect(adjustment.billedTo?.name == "Renamed Tenant")
        #expect(invoices.first { $0.kind == "period" }?.billedTo?.name == (try issuedTo.decode(0, as: String.self)))

        // Nothing late is left: a later run finds nothing due for this tenant.
        let again = try await fixture.bill(asOf: end.addingTimeInterval(4 * 86_400), tenants: [tenant])
        #expect(again?.due == 0)
        #expect(try await fixture.invoices(tenant).count == 2)
        await fixture.close()
    }

    @Test("cancel at period end: the last period is invoiced as usual, and nothing after it")
    func cancelAtPeriodEnd() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 80)
        let end = adding(months: 1, to: start)
        // Asked mid-period with at_period_end: the subscription ends when that period does.
        try await fixture.subscribe(tenant, plan: "starter", start: start, endsAt: end)
        try await fixture.sendUsage(
            (0..<60).map { usageEvent("e\($0)", tenant: tenant, metric: "estimates", at: start.addingTimeInterval(86_400)) },
            tenant: tenant, expected: 60)
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 1)
        #expect(invoices[0].periodStart == start && invoices[0].periodEnd == end)
        #expect(invoices[0].lines.map(\.amountCents) == [29_900, 5_000])  // 10 estimates over 50 at 500¢
        await fixture.close()
    }
}
