import BillingEngine
import Foundation
import TallyTestSupport
import Testing

@Suite("Aggregations and partial merging (SPEC §2 Billable metrics)")
struct AggregationTests {
    static let all: [Aggregation] = [.sum, .count, .max, .latest, .uniqueCount(field: "user")]

    func record(_ id: String, _ second: Int64, _ quantity: Int64, user: String? = nil) -> UsageRecord {
        UsageRecord(
            id: id, time: Instant(microsecondsSinceEpoch: second * 1_000_000), quantity: Quantity(units: quantity),
            metadata: user.map { ["user": $0] } ?? [:])
    }

    @Test("each aggregation on a small example")
    func examples() {
        let records = [record("a", 10, 5, user: "u1"), record("b", 30, 2, user: "u2"), record("c", 20, 9, user: "u1"), record("d", 30, 1)]
        #expect(PartialAggregate(.sum, of: records).value == Quantity(units: 17))
        #expect(PartialAggregate(.count, of: records).value == Quantity(units: 4))
        #expect(PartialAggregate(.max, of: records).value == Quantity(units: 9))
        #expect(PartialAggregate(.latest, of: records).value == Quantity(units: 1))  // time 30, id "d" > "b"
        #expect(PartialAggregate(.uniqueCount(field: "user"), of: records).value == Quantity(units: 2))
        for aggregation in Self.all { #expect(PartialAggregate(empty: aggregation).value == .zero) }
        #expect(MetricCatalog.seeded.aggregation(for: "users") == .max)
        #expect(MetricCatalog.seeded.aggregation(for: "never_seen") == .sum)
        #expect(MetricCatalog.aggregation(named: "unique_count", field: "ip") == .uniqueCount(field: "ip"))
        #expect(MetricCatalog.aggregation(named: "median") == nil)
    }

    /// The straight definition of each aggregation over raw events: the reference.
    func naive(_ aggregation: Aggregation, _ records: [UsageRecord]) -> Quantity {
        switch aggregation {
        case .sum:
            var total: Int128 = 0
            for record in records { total += record.quantity.scaled }
            return Quantity(scaled: total)
        case .count:
            return Quantity(units: Int64(records.count))
        case .max:
            var best: Int128 = 0
            for record in records where record.quantity.scaled > best { best = record.quantity.scaled }
            return Quantity(scaled: best)
        case .latest:
            var chosen: UsageRecord?
            for record in records {
                if chosen == nil || record.time > chosen!.time || (record.time == chosen!.time && record.id > chosen!.id)
                    || (record.time == chosen!.time && record.id == chosen!.id && record.quantity > chosen!.quantity)
                {
                    chosen = record
                }
            }
            return chosen?.quantity ?? .zero
        case .uniqueCount(let field):
            var seen: [String] = []
            for record in records { if let value = record.metadata[field], !seen.contains(value) { seen.append(value) } }
            return Quantity(units: Int64(seen.count))
        }
    }

    @Test("merging partials in any grouping and order equals aggregating the raw events", arguments: 0..<5)
    func mergeIsExact(round: Int) {
        let seed = UInt64.random(in: .min ... .max)
        var generator = SeededRandom(seed: seed)
        for _ in 0..<300 {
            let records = (0..<Int.random(in: 0...60, using: &generator)).map { index in
                UsageRecord(
                    id: "e\(Int.random(in: 0...30, using: &generator))",
                    time: Instant(microsecondsSinceEpoch: Int64.random(in: 0...20, using: &generator)),
                    quantity: Quantity(scaled: Int128(Int64.random(in: 0...100_000, using: &generator))),
                    metadata: Bool.random(using: &generator) ? ["user": "u\(Int.random(in: 0...5, using: &generator))"] : [:])
            }
            for aggregation in Self.all {
                // Split into random hourly-like slices, aggregate each, merge in a shuffled, randomly nested order.
                var partials: [PartialAggregate] = []
                var rest = records[...]
                while !rest.isEmpty {
                    let take = Int.random(in: 1...max(1, rest.count), using: &generator)
                    partials.append(PartialAggregate(aggregation, of: rest.prefix(take)))
                    rest = rest.dropFirst(take)
                }
                partials.shuffle(using: &generator)
                while partials.count > 1 {
                    let i = Int.random(in: 0..<partials.count, using: &generator)
                    let left = partials.remove(at: i)
                    let j = Int.random(in: 0..<partials.count, using: &generator)
                    partials[j] = Bool.random(using: &generator) ? left.merging(partials[j]) : partials[j].merging(left)
                }
                let merged = partials.first ?? PartialAggregate(empty: aggregation)
                #expect(merged.value == naive(aggregation, records), "seed \(seed), \(aggregation)")
                #expect(merged == PartialAggregate(aggregation, of: records.shuffled(using: &generator)), "seed \(seed), \(aggregation)")
            }
        }
    }
}

@Suite("Usage alerts (SPEC §2 Alerts)")
struct AlertTests {
    func q(_ units: Int64) -> Quantity { Quantity(units: units) }

    @Test("threshold and quota-percentage alerts fire once per period, at the boundary")
    func thresholds() {
        let rules = [
            AlertRule(id: "t100", metric: "api_calls", condition: .threshold(q(100))),
            AlertRule(id: "q80", metric: "api_calls", condition: .quotaPercentage(Quantity(units: 80))),
            AlertRule(id: "q100", metric: "api_calls", condition: .quotaPercentage(Quantity(units: 100))),
        ]
        let quota = q(1000)
        #expect(AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(99), quota: quota), firedThisPeriod: []).isEmpty)
        #expect(AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(100), quota: quota), firedThisPeriod: []).map(\.id) == ["t100"])
        #expect(AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(799), quota: quota), firedThisPeriod: ["t100"]).isEmpty)
        #expect(
            AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(800), quota: quota), firedThisPeriod: ["t100"]).map(\.id) == ["q80"])
        #expect(
            AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(5000), quota: quota), firedThisPeriod: ["t100", "q80"]).map(\.id) == [
                "q100"
            ])
        #expect(
            AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(5000), quota: quota), firedThisPeriod: ["t100", "q80", "q100"])
                .isEmpty)
        // A new period re-arms every rule; without a quota, percentage rules never fire.
        #expect(AlertEvaluator.newlyFiring(rules: rules, input: AlertInput(value: q(5000), quota: nil), firedThisPeriod: []).map(\.id) == ["t100"])
        // 80 % of a fractional quota is compared exactly: 0.8 × 12.5 = 10.
        let fractional = AlertInput(value: Quantity(scaled: 99_999), quota: Quantity(scaled: 125_000))
        #expect(AlertEvaluator.newlyFiring(rules: [rules[1]], input: fractional, firedThisPeriod: []).isEmpty)
        #expect(
            AlertEvaluator.newlyFiring(rules: [rules[1]], input: AlertInput(value: q(10), quota: Quantity(scaled: 125_000)), firedThisPeriod: [])
                .count == 1)
    }

    @Test("a quota percentage is exact to its hundredths (33.99 % is not 33 %), and an Unlimited quota is never reached")
    func fractionalPercentages() {
        func fires(_ percent: String, value: Quantity, quota: Quantity, unlimited: Bool = false) -> Bool {
            let rule = AlertRule(id: "p", metric: "m", condition: .quotaPercentage(try! Quantity(parsingTotal: percent)))
            return !AlertEvaluator.newlyFiring(
                rules: [rule], input: AlertInput(value: value, quota: quota, quotaIsUnlimited: unlimited), firedThisPeriod: []
            ).isEmpty
        }
        // 33.99 % of 50 is 16.995 (it fired at 16.5 when cut to 33).
        #expect(!fires("33.99", value: Quantity(scaled: 165_000), quota: q(50)))
        #expect(!fires("33.99", value: Quantity(scaled: 169_949), quota: q(50)))
        #expect(fires("33.99", value: Quantity(scaled: 169_950), quota: q(50)))
        // 0.5 % of 1000 is 5 (it fired at 0 when cut to 0).
        #expect(!fires("0.5", value: .zero, quota: q(1000)))
        #expect(!fires("0.5", value: Quantity(scaled: 49_999), quota: q(1000)))
        #expect(fires("0.5", value: q(5), quota: q(1000)))
        // The enterprise plan's 999999 "Unlimited": no percentage of it is reached.
        #expect(!fires("50", value: q(600_000), quota: q(999_999), unlimited: true))
        #expect(fires("50", value: q(600_000), quota: q(999_999)))
        // Against a reference in Decimal, over random values, quotas and percentages.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let value = Quantity(scaled: Int128(Int64.random(in: 0...20_000_000, using: &generator)))
            let quota = Quantity(scaled: Int128(Int64.random(in: 1...10_000_000, using: &generator)))
            let hundredths = Int64.random(in: 1...20_000, using: &generator)
            let percent = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
            let reference =
                Decimal(string: value.description)! * 100 >= Decimal(string: quota.description)! * Decimal(string: percent)!
            #expect(fires(percent, value: value, quota: quota) == reference, "\(value) \(quota) \(percent)")
        }
    }

    @Test("anomaly: a robust median/MAD rule ignores noise and a single past spike, and fires on a real surge")
    func anomaly() {
        let rule = AnomalyRule()
        let steady = (0..<24).map { q(100 + Int64($0 % 5)) }
        #expect(!rule.isAnomalous(lastHour: q(150), trailingHours: steady))
        #expect(rule.isAnomalous(lastHour: q(400), trailingHours: steady))
        var spiky = steady
        spiky[10] = q(5000)  // one earlier spike does not move the baseline
        #expect(rule.isAnomalous(lastHour: q(400), trailingHours: spiky))
        #expect(!rule.isAnomalous(lastHour: q(400), trailingHours: Array(steady.prefix(5))))  // too little history
        #expect(!rule.isAnomalous(lastHour: q(9), trailingHours: Array(repeating: .zero, count: 24)))  // below the minimum
        #expect(rule.isAnomalous(lastHour: q(10), trailingHours: Array(repeating: .zero, count: 24)))
        let noisy = (0..<24).map { q($0 % 2 == 0 ? 50 : 150) }
        #expect(!rule.isAnomalous(lastHour: q(250), trailingHours: noisy))  // within the usual swing
        let alert = AlertRule(id: "anomaly", metric: "api_calls", condition: .anomaly(rule))
        let input = AlertInput(value: q(3000), quota: nil, lastHour: q(400), trailingHours: steady)
        #expect(AlertEvaluator.newlyFiring(rules: [alert], input: input, firedThisPeriod: []).map(\.id) == ["anomaly"])
        #expect(AlertEvaluator.newlyFiring(rules: [alert], input: input, firedThisPeriod: ["anomaly"]).isEmpty)
    }
}
