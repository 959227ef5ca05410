import BillingEngine
import Foundation
import TallyTestSupport
import Testing

@Suite("A metric's standing against its plan: percent of quota and its band")
struct MetricStandingTests {
    func standing(_ value: String, quota: String?, rate: Int64 = 10) throws -> MetricStanding {
        let terms = try quota.map { MetricTerms(quota: try Quantity(parsing: $0), overageRate: UnitPrice(cents: rate)) }
        return MetricStanding(metric: "api_calls", value: try Quantity(parsing: value), terms: terms)
    }

    @Test("the bands' edges: below 50 % low, from 50 % elevated, from 80 % high; 4-decimal values")
    func edges() throws {
        #expect(try standing("49.9999", quota: "100").level == .low)
        #expect(try standing("49.9999", quota: "100").percent == 49)
        #expect(try standing("50", quota: "100").level == .elevated)
        #expect(try standing("79.9999", quota: "100").level == .elevated)
        #expect(try standing("80", quota: "100").level == .high)
        #expect(try standing("250", quota: "100").percent == 250)
        #expect(try standing("0", quota: "0").percent == 0)
        #expect(try standing("0.0001", quota: "0").level == .high)
        #expect(try standing("5", quota: nil).percent == nil)
        #expect(try standing("5", quota: "999999").isUnlimited)
        #expect(try standing("5", quota: "999999").level == nil)
        // Only the sentinel: a larger quota is a quota, reached and exceeded as any other.
        #expect(try !standing("5", quota: "5000000").isUnlimited)
        #expect(try standing("5000001", quota: "5000000").level == .high)
        #expect(try standing("5000001", quota: "5000000").percent == 100)
    }

    @Test("random values and quotas: percent and band equal a reference in exact rational arithmetic")
    func againstReference() throws {
        var random = SeededRandom(seed: 0x57A_D1E6)
        for _ in 0..<5_000 {
            let quota = Quantity(scaled: Int128(random.next() % 20_000_000))
            let value = Quantity(scaled: Int128(random.next() % 40_000_000))
            let standing = MetricStanding(metric: "m", value: value, terms: MetricTerms(quota: quota))
            guard quota > .zero else { continue }
            // Reference: the floored percent p is the whole number with p × quota ≤ 100 × value < (p + 1) × quota.
            let percent = try #require(standing.percent)
            #expect(Int128(percent) * quota.scaled <= 100 * value.scaled, "\(value) of \(quota)")
            #expect(100 * value.scaled < Int128(percent + 1) * quota.scaled, "\(value) of \(quota)")
            let low = 2 * value.scaled < quota.scaled
            let high = 5 * value.scaled >= 4 * quota.scaled
            #expect(standing.level == (low ? .low : high ? .high : .elevated), "\(value) of \(quota)")
        }
    }

    @Test("standings list every metric with usage or terms, with the charge of the draft's lines for it")
    func standingsFromDraft() throws {
        let plan = Plan.starter
        let values = ["api_calls": Quantity(units: 1_500), "documents": Quantity(units: 2)]
        let period = Period(start: Instant(microsecondsSinceEpoch: 0), end: Instant(microsecondsSinceEpoch: 86_400_000_000))
        let lines = try InvoiceCalculator.overageLines(plan: plan, values: values, period: period)
        let standings = MetricStanding.standings(values: values, plan: plan, lines: lines)
        #expect(standings.map(\.metric) == ["api_calls", "documents", "estimates", "users"])
        #expect(standings.first?.charge == Cents(5_000))
        #expect(standings.first?.percent == 150)
        #expect(standings[1].isUnlimited && standings[1].charge == .zero)
        #expect(standings[2].value == .zero && standings[2].quota == Quantity(units: 50))
    }
}
