import Foundation
import Invoicing
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
        let start = Date(timeIntervalSince1970: ((Date().timeIntervalSince1970 - 70 * day) / day).rounded(.down) * day)
        try await fixture.subscribe(tenant, plan: "starter", start: start)
        let inPeriod = start.addingTimeInterval(2 * day)
        var events = (0..<1500).map { usageEvent("call-\($0)", tenant: tenant, metric: "api_calls", at: inPeriod.addingTimeInterval(Double($0))) }
        events += (0..<40).map { usageEvent("estimate-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }
        events += [2, 5, 4].enumerated().map { usageEvent("seats-\($0.offset)", tenant: tenant, metric: "users", quantity: "\($0.element)", at: inPeriod) }
        try await fixture.sendUsage(events, tenant: tenant, expected: events.count)

        var timeZoned = Calendar(identifier: .gregorian)
        timeZoned.timeZone = TimeZone(identifier: "UTC")!
        let end = timeZoned.date(byAdding: .month, value: 1, to: start)!
        let run = try await fixture.bill(asOf: end.addingTimeInterval(2 * 3600))
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

        // Billing again at the same instant issues nothing new.
        try await fixture.bill(asOf: end.addingTimeInterval(2 * 3600))
        #expect(try await fixture.invoices(tenant).count == 1)

        // 100 more calls arrive for the invoiced period: the next invoice bills them as an adjustment.
        let late = (0..<100).map { usageEvent("late-\($0)", tenant: tenant, metric: "api_calls", at: inPeriod.addingTimeInterval(5000)) }
        try await fixture.sendUsage(late, tenant: tenant, expected: events.count + 100)
        let nextEnd = timeZoned.date(byAdding: .month, value: 2, to: start)!
        try await fixture.bill(asOf: nextEnd.addingTimeInterval(2 * 3600))
        invoices = try await fixture.invoices(tenant)
        try #require(invoices.count == 2)
        let next = invoices[0]
        #expect(next.periodStart == end)
        #expect(next.lines.map(\.kind) == ["base", "adjustment"])
        #expect(next.lines.last?.amountCents == 1_000)  // charge(600 over) − charge(500 over) at 10¢
        #expect(next.lines.last?.metric == "api_calls")
        #expect(next.subtotalCents == 30_900)
        await fixture.close()
    }
}
