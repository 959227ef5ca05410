import BillingEngine
import TallyTestSupport
import Testing

/// Thousands of random subscriptions and event sets, each invoiced by the engine and
/// by a deliberately naive reference written here with straight loops over raw
/// events and its own calendar arithmetic (no engine helpers). A failure prints the
/// seed; rerun with it to replay.
@Suite("Invoice properties against a naive reference")
struct InvoicePropertyTests {
    static let metrics = ["api_calls", "documents", "estimates", "users"]
    static let plans: [Plan] =
        Plan.seeded + [
            Plan(
                slug: "metered", name: "Metered", baseFee: 1_234,
                terms: [
                    "api_calls": MetricTerms(quota: Quantity(scaled: 5_000_000), overageRate: UnitPrice(scaled: 300)),  // 0.0003¢
                    "documents": MetricTerms(quota: Quantity(scaled: 25), overageRate: UnitPrice(scaled: 12_345_600)),  // 12.3456¢
                ])
        ]

    struct Scenario {
        var subscription: Subscription
        var start: Instant
        var trialEnd: Instant?
        var change: (to: Plan, at: Instant)?
        var cancellation: Cancellation?
        var index: Int64
        var events: [(metric: String, record: UsageRecord)]
        var taxBasisPoints: Int
    }

    static func scenario(_ g: inout SeededRandom) -> Scenario {
        let day: Int64 = 86_400_000_000
        let start = Instant(microsecondsSinceEpoch: Int64.random(in: 18_262...21_915, using: &g) * day + Int64.random(in: 0..<day, using: &g))
        let plan = plans.randomElement(using: &g)!
        let trialEnd = Int.random(in: 0..<10, using: &g) < 3 ? start.advanced(byMicroseconds: Int64.random(in: 1...40, using: &g) * day / 2) : nil
        var subscription = Subscription(plan: plan, start: start, trialEnd: trialEnd)
        let index = Int64.random(in: 0...14, using: &g)
        let horizon = (index + 2) * 31 * day
        var change: (Plan, Instant)?
        if Bool.random(using: &g) {
            let other = plans.filter { $0 != plan }.randomElement(using: &g)!
            let at = start.advanced(byMicroseconds: Int64.random(in: 0...horizon, using: &g))
            subscription.changePlan(to: other, requestedAt: at)
            change = (other, at)
        }
        var cancellation: Cancellation?
        switch Int.random(in: 0..<10, using: &g) {
        case 0, 1: cancellation = .immediately(at: start.advanced(byMicroseconds: Int64.random(in: 0...horizon, using: &g)))
        case 2: cancellation = .atPeriodEnd(requestedAt: start.advanced(byMicroseconds: Int64.random(in: 0...horizon, using: &g)))
        default: break
        }
        if let cancellation { subscription.cancel(cancellation) }
        let events = (0..<Int.random(in: 0...150, using: &g)).map { n in
            (
                metrics.randomElement(using: &g)!,
                UsageRecord(
                    id: "evt\(n)", time: start.advanced(byMicroseconds: Int64.random(in: -day...horizon, using: &g)),
                    quantity: Quantity(scaled: Int128(Int64.random(in: 0...2_000_000, using: &g))))
            )
        }
        return Scenario(
            subscription: subscription, start: start, trialEnd: trialEnd, change: change, cancellation: cancellation,
            index: index, events: events, taxBasisPoints: Int.random(in: 0...2_500, using: &g))
    }

    // MARK: The naive reference

    /// Days since 1970-01-01 → (year, month, day), by walking years and months.
    static func naiveCivil(_ days: Int64) -> (Int64, Int64, Int64) {
        var year: Int64 = 1970, rest = days
        while rest >= naiveYearLength(year) {
            rest -= naiveYearLength(year)
            year += 1
        }
        var month: Int64 = 1
        while rest >= naiveMonthLength(year, month) {
            rest -= naiveMonthLength(year, month)
            month += 1
        }
        return (year, month, rest + 1)
    }

    static func naiveDays(_ year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        var days: Int64 = 0
        for y in 1970..<year { days += naiveYearLength(y) }
        for m in 1..<month { days += naiveMonthLength(year, m) }
        return days + day - 1
    }

    static func naiveLeap(_ y: Int64) -> Bool { y % 400 == 0 || (y % 4 == 0 && y % 100 != 0) }
    static func naiveYearLength(_ y: Int64) -> Int64 { naiveLeap(y) ? 366 : 365 }
    static func naiveMonthLength(_ y: Int64, _ m: Int64) -> Int64 {
        [31, naiveLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][Int(m - 1)]
    }

    /// Start of period n after `anchor` (µs), re-derived from the anchor.
    static func naiveBoundary(_ anchor: Int64, _ n: Int64, months: Int64) -> Int64 {
        let day: Int64 = 86_400_000_000
        let (y, m, d) = naiveCivil(anchor / day)
        var year = y, month = m
        for _ in 0..<(n * months) {
            month += 1
            if month == 13 {
                month = 1
                year += 1
            }
        }
        return naiveDays(year, month, min(d, naiveMonthLength(year, month))) * day + anchor % day
    }

    struct NaiveInvoice: Equatable {
        var lines: [(kind: InvoiceLine.Kind, metric: String?, amount: Int64)]
        var subtotal: Int64, tax: Int64, total: Int64
        static func == (a: NaiveInvoice, b: NaiveInvoice) -> Bool {
            a.lines.map { "\($0.kind)|\($0.metric ?? "-")|\($0.amount)" } == b.lines.map { "\($0.kind)|\($0.metric ?? "-")|\($0.amount)" }
                && (a.subtotal, a.tax, a.total) == (b.subtotal, b.tax, b.total)
        }
    }

    /// A metric's value over [start, end): a sum, or the highest reading for `users`; nil without events.
    static func naiveValue(_ metric: String, _ events: [(metric: String, record: UsageRecord)], _ start: Int64, _ end: Int64) -> Int128? {
        var value: Int128?
        for (m, record) in events where m == metric && record.time.microsecondsSinceEpoch >= start && record.time.microsecondsSinceEpoch < end {
            value = metric == "users" ? max(value ?? 0, record.quantity.scaled) : (value ?? 0) + record.quantity.scaled
        }
        return value
    }

    /// Units above the quota (ten-thousandths) when the metric has a quota and a rate; else 0.
    static func naiveBillable(_ plan: Plan, _ metric: String, _ value: Int128) -> Int128 {
        guard let terms = plan.terms[metric], let quota = terms.quota, terms.overageRate.scaled > 0, value > quota.scaled else { return 0 }
        return value - quota.scaled
    }

    /// Ten-thousandths as text with a comma every three whole digits, built from the right.
    static func naiveGrouped(_ scaled: Int128) -> String {
        var whole = scaled / 10_000
        var text = ""
        repeat {
            let chunk = String(whole % 1000)
            whole /= 1000
            text = (whole > 0 ? String(repeating: "0", count: 3 - chunk.count) + chunk : chunk) + (text.isEmpty ? "" : "," + text)
        } while whole > 0
        var fraction = String(scaled % 10_000)
        guard fraction != "0" else { return text }
        fraction = String(repeating: "0", count: 4 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return text + "." + fraction
    }

    static func naiveOverage(_ plan: Plan, _ metric: String, _ value: Int128) -> Int64 {
        guard let terms = plan.terms[metric], let quota = terms.quota, terms.overageRate.scaled > 0, value > quota.scaled else { return 0 }
        // Ten-thousandths of a unit times millionths of a cent: 10⁻¹⁰ cent.
        let product = (value - quota.scaled) * terms.overageRate.scaled
        var cents = product / 10_000_000_000
        if cents * 10_000_000_000 < product { cents += 1 }
        return Int64(cents)
    }

    /// The invoice as SPEC §2 words it, or nil when the period is not billed.
    static func naiveInvoice(_ s: Scenario, events: [(metric: String, record: UsageRecord)]) -> (start: Int64, end: Int64, NaiveInvoice)? {
        let initial = s.subscription.initialPlan
        let months: Int64 = initial.interval == .monthly ? 1 : 12
        let anchor = (s.trialEnd ?? s.start).microsecondsSinceEpoch
        func periodEnd(containing t: Int64) -> Int64 {
            var n: Int64 = 0
            while naiveBoundary(anchor, n + 1, months: months) <= t { n += 1 }
            return naiveBoundary(anchor, n + 1, months: months)
        }
        let start = naiveBoundary(anchor, s.index, months: months)
        let fullEnd = naiveBoundary(anchor, s.index + 1, months: months)
        var end = fullEnd
        switch s.cancellation {
        case .immediately(let at): end = min(end, max(at.microsecondsSinceEpoch, s.start.microsecondsSinceEpoch))
        case .atPeriodEnd(let requested):
            let at = requested.microsecondsSinceEpoch
            end = min(end, at < anchor ? anchor : periodEnd(containing: at))
        case nil: break
        }
        guard start < end else { return nil }
        // Plan segments.
        var effective = Int64.max
        var newPlan = initial
        if let change = s.change {
            newPlan = change.to
            let at = change.at.microsecondsSinceEpoch
            effective = change.to.baseFee > initial.baseFee || at < anchor ? max(at, anchor) : periodEnd(containing: at)
        }
        var lines: [(kind: InvoiceLine.Kind, metric: String?, amount: Int64)] = []
        var segments: [(Plan, Int64)] = []
        if effective <= start {
            segments = [(newPlan, end - start)]
        } else if effective >= end {
            segments = [(initial, end - start)]
        } else {
            segments = [(initial, effective - start), (newPlan, end - effective)]
        }
        for (plan, length) in segments {
            let numerator = Int128(plan.baseFee.value) * Int128(length)
            let full = Int128(fullEnd - start)
            lines.append((.base, nil, Int64((2 * numerator + full) / (2 * full))))
        }
        let pricing = effective < end ? newPlan : initial
        for metric in metrics {
            guard let value = naiveValue(metric, events, start, end) else { continue }
            let amount = naiveOverage(pricing, metric, value)
            if amount > 0 { lines.append((.overage, metric, amount)) }
        }
        let subtotal = lines.reduce(0) { $0 + $1.amount }
        let taxNumerator = Int128(subtotal) * Int128(s.taxBasisPoints)
        let tax = Int64((2 * taxNumerator + 10_000) / 20_000)
        return (start, end, NaiveInvoice(lines: lines, subtotal: subtotal, tax: tax, total: subtotal + tax))
    }

    // MARK: The engine, fed through partial aggregates in random groupings

    static func engineValues(_ events: [(metric: String, record: UsageRecord)], in period: Period, _ g: inout SeededRandom) -> [String: Quantity] {
        var partials: [String: [PartialAggregate]] = [:]
        for chunk in events.shuffled(using: &g).chunked(Int.random(in: 1...20, using: &g)) {
            for metric in metrics {
                let records = chunk.filter { $0.metric == metric && period.contains($0.record.time) }.map(\.record)
                guard !records.isEmpty else { continue }
                partials[metric, default: []].append(PartialAggregate(MetricCatalog.seeded.aggregation(for: metric), of: records))
            }
        }
        return partials.mapValues { $0.shuffled(using: &g).merged(as: $0[0].aggregation).value }
    }

    @Test("2,000 random timelines: the engine's invoice equals the naive reference to the cent", arguments: 0..<4)
    func matchesReference(batch: Int) throws {
        let seed = UInt64.random(in: .min ... .max)
        var g = SeededRandom(seed: seed)
        for round in 0..<500 {
            let s = Self.scenario(&g)
            let reference = Self.naiveInvoice(s, events: s.events)
            guard let period = s.subscription.billingPeriod(s.index) else {
                #expect(reference == nil, "seed \(seed) round \(round): the engine bills no period \(s.index), the reference does")
                continue
            }
            let expected = try #require(reference, "seed \(seed) round \(round): the engine bills a period the reference does not")
            #expect(
                period.billed == Period(start: Instant(microsecondsSinceEpoch: expected.start), end: Instant(microsecondsSinceEpoch: expected.end)),
                "seed \(seed) round \(round)")
            let draft = try InvoiceCalculator.invoice(
                for: period, of: s.subscription, values: Self.engineValues(s.events, in: period.billed, &g), taxBasisPoints: s.taxBasisPoints)
            let actual = NaiveInvoice(
                lines: draft.lines.map { ($0.kind, $0.metric, $0.amount.value) }, subtotal: draft.subtotal.value, tax: draft.tax.value,
                total: draft.total.value)
            #expect(actual == expected.2, "seed \(seed) round \(round)")

            // Segments tile the billed span exactly, in order, without gaps or overlaps.
            let segments = s.subscription.segments(of: period)
            #expect(segments.first?.span.start == period.billed.start && segments.last?.span.end == period.billed.end, "seed \(seed) round \(round)")
            for (a, b) in zip(segments, segments.dropFirst()) {
                #expect(a.span.end == b.span.start && a.plan != b.plan, "seed \(seed) round \(round)")
            }
            // Without late usage no line is negative.
            #expect(draft.lines.allSatisfy { $0.amount >= .zero }, "seed \(seed) round \(round)")
            // The same events in another order, another grouping: the same invoice.
            let again = try InvoiceCalculator.invoice(
                for: period, of: s.subscription, values: Self.engineValues(s.events.reversed(), in: period.billed, &g),
                taxBasisPoints: s.taxBasisPoints)
            #expect(again == draft, "seed \(seed) round \(round)")

            // Late usage: bill a random part first; the rest arrives late. The adjustment is
            // exactly the naive charge with everything minus the naive charge billed.
            let cut = Int.random(in: 0...s.events.count, using: &g)
            let early = Array(s.events.prefix(cut))
            let billedValues = Self.engineValues(early, in: period.billed, &g)
            let allValues = Self.engineValues(s.events, in: period.billed, &g)
            let pricing = s.subscription.pricingPlan(of: period)
            let late = Self.metrics.map { metric in
                LateUsage(
                    period: period.billed, metric: metric, billedValue: billedValues[metric] ?? .zero,
                    currentValue: allValues[metric] ?? .zero, plan: pricing)
            }
            let adjustment = try InvoiceCalculator.adjustmentLines(late).reduce(Cents.zero) { $0 + $1.amount }
            let naiveBilled = Self.naiveInvoice(s, events: early)!.2.lines.filter { $0.kind == .overage }.reduce(0) { $0 + $1.amount }
            let naiveAll = expected.2.lines.filter { $0.kind == .overage }.reduce(0) { $0 + $1.amount }
            #expect(adjustment.value == naiveAll - naiveBilled, "seed \(seed) round \(round)")

            // Each adjustment line bills the units the late usage adds above the quota, at the
            // metric's rate, and keeps both values in its words.
            for line in try InvoiceCalculator.adjustmentLines(late) {
                let metric = try #require(line.metric)
                let before = Self.naiveValue(metric, early, expected.start, expected.end) ?? 0
                let after = Self.naiveValue(metric, s.events, expected.start, expected.end) ?? 0
                #expect(
                    line.quantity.scaled == Self.naiveBillable(pricing, metric, after) - Self.naiveBillable(pricing, metric, before),
                    "seed \(seed) round \(round)")
                #expect(line.unitPrice == pricing.terms[metric]?.overageRate, "seed \(seed) round \(round)")
                #expect(line.description.hasPrefix("\(metric): late usage for "), "seed \(seed) round \(round)")
                #expect(
                    line.description.hasSuffix(" — \(Self.naiveGrouped(after)) used, \(Self.naiveGrouped(before)) billed before"),
                    "seed \(seed) round \(round): \(line.description)")
            }

            // Every row adds up: quantity × unit price is the amount to within the cent the
            // rounding up (or, for a prorated base fee, the segment's own price) may add.
            for line in try draft.lines + InvoiceCalculator.adjustmentLines(late) {
                let product = line.quantity.scaled * line.unitPrice.scaled  // in 10⁻¹⁰ cent
                let difference = product - Int128(line.amount.value) * 10_000_000_000
                #expect(difference > -10_000_000_000 && difference < 10_000_000_000, "seed \(seed) round \(round): \(line)")
            }
        }
    }

    @Test("2,000 random periods read as the rule says, checked against the naive calendar")
    func periodText() {
        let seed = UInt64.random(in: .min ... .max)
        var g = SeededRandom(seed: seed)
        let day: Int64 = 86_400_000_000
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        for round in 0..<2_000 {
            // Whole days half of the time, any second otherwise (sub-second parts are not shown).
            let start =
                Int64.random(in: 10_957...83_000, using: &g) * day
                + (Bool.random(using: &g) ? 0 : Int64.random(in: 0..<86_400, using: &g) * 1_000_000)
            let end =
                start
                + (Bool.random(using: &g) ? Int64.random(in: 1...400, using: &g) * day : Int64.random(in: 1...(400 * 86_400), using: &g) * 1_000_000)
            let (y1, m1, d1) = Self.naiveCivil(start / day)
            let (y2, m2, d2) = Self.naiveCivil(end / day)
            let (t1, t2) = (start % day / 1_000_000, end % day / 1_000_000)
            func withTime(_ t: Int64) -> String {
                t == 0 ? "" : " \(two(t / 3600)):\(two(t % 3600 / 60))" + (t % 60 == 0 ? "" : ":\(two(t % 60))")
            }
            let expected: String
            if t1 != 0 || t2 != 0 {
                expected = "\(months[Int(m1 - 1)]) \(d1), \(y1)\(withTime(t1)) – \(months[Int(m2 - 1)]) \(d2), \(y2)\(withTime(t2)) UTC"
            } else if y1 != y2 {
                expected = "\(months[Int(m1 - 1)]) \(d1), \(y1) – \(months[Int(m2 - 1)]) \(d2), \(y2)"
            } else {
                expected = "\(months[Int(m1 - 1)]) \(d1) – \(months[Int(m2 - 1)]) \(d2), \(y2)"
            }
            let period = Period(start: Instant(microsecondsSinceEpoch: start), end: Instant(microsecondsSinceEpoch: end))
            #expect(InvoiceText.period(period) == expected, "seed \(seed) round \(round)")
        }
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
