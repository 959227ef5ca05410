import BillingEngine
import Testing

/// Worked examples, line by line to the cent (SPEC §2), in the style of Lago's
/// scenario specs: a subscription moves through time and each invoice is checked.
@Suite("Invoice scenarios (SPEC §2 worked examples)")
struct InvoiceScenarioTests {
    func day(_ y: Int64, _ m: Int64, _ d: Int64, _ h: Int64 = 0) -> Instant { Instant(year: y, month: m, day: d, hour: h) }
    func q(_ text: String) -> Quantity { try! Quantity(parsing: text) }
    func amounts(_ draft: InvoiceDraft) -> [Cents] { draft.lines.map(\.amount) }

    @Test("the seeded plans are exactly SPEC §2's table")
    func seededPlans() {
        #expect(Plan.seeded.map(\.slug) == ["starter", "professional", "enterprise"])
        #expect(Plan.seeded.map(\.baseFee) == [29_900, 99_900, 299_900])
        let table: [(Plan, [Int64], [Int64])] = [
            (.starter, [50, 1000, 3], [500, 10, 1000]), (.professional, [200, 10_000, 10], [400, 8, 800]),
            (.enterprise, [999_999, 999_999, 999_999], [0, 0, 0]),
        ]
        for (plan, quotas, rates) in table {
            for (index, metric) in ["estimates", "api_calls", "users"].enumerated() {
                #expect(plan.terms[metric]?.quota == Quantity(units: quotas[index]))
                #expect(plan.terms[metric]?.overageRate == UnitPrice(cents: rates[index]))
                #expect(plan.terms[metric]?.enforcement == .soft)
            }
        }
        #expect(Plan.enterprise.terms.values.allSatisfy { $0.isUnlimited })
        #expect(!Plan.starter.terms["estimates"]!.isUnlimited)
    }

    @Test("starter with 60 estimates, 1000.5 API calls and seats peaking at 4: overage 5000, 5 and 1000 cents")
    func starterOverage() throws {
        let subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        let period = try #require(subscription.billingPeriod(0))
        let seats = PartialAggregate(
            .max, of: [2, 4, 3].enumerated().map { UsageRecord(id: "s\($0)", time: day(2026, 11, 2 + Int64($0)), quantity: Quantity(units: $1)) })
        let draft = try InvoiceCalculator.invoice(
            for: period, of: subscription, values: ["estimates": q("60"), "api_calls": q("1000.5"), "users": seats.value], taxBasisPoints: 0)
        #expect(draft.lines.map(\.kind) == [.base, .overage, .overage, .overage])
        #expect(draft.lines.map(\.metric) == [nil, "api_calls", "estimates", "users"])  // ordered by metric name
        #expect(amounts(draft) == [29_900, 5, 5000, 1000])
        #expect(draft.lines.map(\.quantity) == [q("1"), q("0.5"), q("10"), q("1")])
        #expect(
            draft.lines.map(\.description) == [
                "Starter plan, Nov 1 – Dec 1, 2026", "api_calls: 1,000.5 used, 1,000 included", "estimates: 60 used, 50 included",
                "users: 4 used, 3 included",
            ])
        #expect(draft.subtotal == 35_905)
        #expect(draft.total == 35_905)
        #expect(draft.period == Period(start: day(2026, 11, 1), end: day(2026, 12, 1)))
    }

    @Test("usage within every quota: only the base fee")
    func withinQuota() throws {
        let subscription = Subscription(plan: .professional, start: day(2026, 11, 1))
        let draft = try InvoiceCalculator.invoice(
            for: try #require(subscription.billingPeriod(0)), of: subscription,
            values: ["estimates": q("200"), "api_calls": q("10000"), "users": q("10"), "documents": q("5000")], taxBasisPoints: 0)
        #expect(amounts(draft) == [99_900])
    }

    @Test("upgrade from starter to professional halfway, 40 + 60 estimates: two prorated base lines, no overage")
    func upgradeHalfway() throws {
        var subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        let effective = subscription.changePlan(to: .professional, requestedAt: day(2026, 11, 16))
        #expect(effective == day(2026, 11, 16))  // an upgrade takes effect at once
        let period = try #require(subscription.billingPeriod(0))
        let events = [
            UsageRecord(id: "a", time: day(2026, 11, 10), quantity: q("40")), UsageRecord(id: "b", time: day(2026, 11, 20), quantity: q("60")),
        ]
        let draft = try InvoiceCalculator.invoice(
            for: period, of: subscription, values: ["estimates": PartialAggregate(.sum, of: events).value], taxBasisPoints: 0)
        #expect(draft.lines.map(\.kind) == [.base, .base])
        #expect(amounts(draft) == [14_950, 49_950])
        // One unit at the segment's price: the row adds up; the description says which part of the period.
        #expect(draft.lines.map(\.quantity) == [q("1"), q("1")])
        #expect(draft.lines.map(\.unitPrice) == [UnitPrice(cents: 14_950), UnitPrice(cents: 49_950)])
        #expect(
            draft.lines.map(\.description) == [
                "Starter plan, Nov 1 – Nov 16, 2026 (prorated)", "Professional plan, Nov 16 – Dec 1, 2026 (prorated)",
            ])
        #expect(
            draft.lines.map(\.period) == [
                Period(start: day(2026, 11, 1), end: day(2026, 11, 16)), Period(start: day(2026, 11, 16), end: day(2026, 12, 1)),
            ])
        #expect(draft.total == 64_900)
    }

    @Test("an upgrade at 19:22 across the year end: the prorated line shows the time, in UTC")
    func upgradeAtAnHour() throws {
        var subscription = Subscription(plan: .starter, start: day(2026, 12, 16))
        subscription.changePlan(to: .professional, requestedAt: Instant(year: 2026, month: 12, day: 28, hour: 19, minute: 22))
        let draft = try InvoiceCalculator.invoice(for: try #require(subscription.billingPeriod(0)), of: subscription, values: [:], taxBasisPoints: 0)
        #expect(
            draft.lines.map(\.description) == [
                "Starter plan, Dec 16, 2026 – Dec 28, 2026 19:22 UTC (prorated)",
                "Professional plan, Dec 28, 2026 19:22 – Jan 16, 2027 UTC (prorated)",
            ])
        #expect(draft.lines.allSatisfy { $0.unitPrice == UnitPrice(cents: $0.amount.value) })
    }

    @Test("a downgrade waits for the next period; that period bills the new plan in full")
    func downgradeNextPeriod() throws {
        var subscription = Subscription(plan: .professional, start: day(2026, 11, 1))
        #expect(subscription.changePlan(to: .starter, requestedAt: day(2026, 11, 20)) == day(2026, 12, 1))
        let november = try InvoiceCalculator.invoice(
            for: try #require(subscription.billingPeriod(0)), of: subscription, values: ["estimates": q("150")], taxBasisPoints: 0)
        #expect(amounts(november) == [99_900])  // professional quotas still price November
        let december = try InvoiceCalculator.invoice(
            for: try #require(subscription.billingPeriod(1)), of: subscription, values: ["estimates": q("51")], taxBasisPoints: 0)
        #expect(amounts(december) == [29_900, 500])
    }

    @Test("a late event after finalization is an adjustment on the next invoice")
    func lateUsage() throws {
        let subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        let november = try #require(subscription.billingPeriod(0))
        let billed = try InvoiceCalculator.invoice(for: november, of: subscription, values: ["estimates": q("50")], taxBasisPoints: 0)
        #expect(amounts(billed) == [29_900])
        // 5 more estimates dated November arrive after November's invoice was final.
        let late = LateUsage(
            period: november.billed, metric: "estimates", billedValue: q("50"), currentValue: q("55"), plan: subscription.pricingPlan(of: november))
        let december = try InvoiceCalculator.invoice(
            for: try #require(subscription.billingPeriod(1)), of: subscription, values: ["estimates": q("10")], lateUsage: [late], taxBasisPoints: 0)
        #expect(december.lines.map(\.kind) == [.base, .lateUsageAdjustment])
        #expect(amounts(december) == [29_900, 2500])
        #expect(december.lines[1].period == november.billed)
        // The line bills the 5 estimates the late usage adds beyond the quota, at the overage rate: 5 × 500 = 2500.
        #expect(december.lines[1].quantity == q("5"))
        #expect(december.lines[1].unitPrice == UnitPrice(cents: 500))
        #expect(december.lines[1].description == "estimates: late usage for Nov 1 – Dec 1, 2026 — 55 used, 50 billed before")
        // Billed within the quota, now above it: only the units above the quota are added.
        let crossing = LateUsage(period: november.billed, metric: "estimates", billedValue: q("45"), currentValue: q("57"), plan: .starter)
        let crossingLine = try #require(try InvoiceCalculator.adjustmentLines([crossing]).first)
        #expect(crossingLine.quantity == q("7"))
        #expect(crossingLine.amount == 3500)
        #expect(crossingLine.description == "estimates: late usage for Nov 1 – Dec 1, 2026 — 57 used, 45 billed before")
        // Late usage that stays within the quota changes no charge, so it adds no line.
        let harmless = LateUsage(period: november.billed, metric: "estimates", billedValue: q("40"), currentValue: q("45"), plan: .starter)
        #expect(try InvoiceCalculator.adjustmentLines([harmless]).isEmpty)
        // An ended subscription gets an adjustment-only invoice.
        let adjustmentOnly = try InvoiceCalculator.adjustmentInvoice(period: november.billed, lateUsage: [late], taxBasisPoints: 725)
        #expect(amounts(adjustmentOnly) == [2500])
        #expect(adjustmentOnly.tax == 181)  // 181.25
    }

    @Test("a latest reading that went down makes a negative adjustment")
    func negativeAdjustment() throws {
        let plan = Plan(
            slug: "gauge", name: "Gauge", baseFee: 0, terms: ["storage_gb": MetricTerms(quota: q("100"), overageRate: UnitPrice(cents: 3))])
        let late = LateUsage(
            period: Period(start: day(2026, 10, 1), end: day(2026, 11, 1)), metric: "storage_gb", billedValue: q("150"), currentValue: q("120"),
            plan: plan)
        #expect(try late.adjustment() == -90)
        #expect(late.additionalBillableUnits == Quantity.zero - q("30"))  // 20 billable instead of 50
        #expect(try InvoiceCalculator.adjustmentLines([late]).map(\.quantity) == [Quantity.zero - q("30")])
        let draft = try InvoiceCalculator.adjustmentInvoice(period: late.period, lateUsage: [late], taxBasisPoints: 725)
        #expect(draft.subtotal == -90)
        #expect(draft.tax == -7)  // −6.525 → −7, mirroring a charge
    }

    @Test("a trial's usage is recorded but never billed; the first period starts at the trial's end")
    func trial() throws {
        let subscription = Subscription(plan: .starter, start: day(2026, 11, 1), trialEnd: day(2026, 11, 15))
        #expect(subscription.trial == Period(start: day(2026, 11, 1), end: day(2026, 11, 15)))
        #expect(subscription.billingPeriod(containing: day(2026, 11, 10)) == nil)
        #expect(subscription.billingPeriod(-1) == nil)
        let first = try #require(subscription.billingPeriod(containing: day(2026, 11, 15)))
        #expect(first.billed == Period(start: day(2026, 11, 15), end: day(2026, 12, 15)))
        let draft = try InvoiceCalculator.invoice(for: first, of: subscription, values: ["estimates": q("50")], taxBasisPoints: 0)
        #expect(amounts(draft) == [29_900])
    }

    @Test("7.25 % tax on the starter base fee: 2167.75 rounds to 2168")
    func taxRounding() throws {
        let subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        let draft = try InvoiceCalculator.invoice(
            for: try #require(subscription.billingPeriod(0)), of: subscription, values: [:], taxBasisPoints: 725)
        #expect(draft.subtotal == 29_900)
        #expect(draft.tax == 2168)
        #expect(draft.total == 32_068)
    }

    @Test("cancel now: the period ends then, base prorated over the full period's length")
    func cancelNow() throws {
        var subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        subscription.cancel(.immediately(at: day(2026, 11, 11)))
        let period = try #require(subscription.billingPeriod(0))
        #expect(period.billed == Period(start: day(2026, 11, 1), end: day(2026, 11, 11)))
        #expect(subscription.billingPeriod(1) == nil)
        let draft = try InvoiceCalculator.invoice(for: period, of: subscription, values: ["api_calls": q("1001")], taxBasisPoints: 0)
        #expect(amounts(draft) == [9967, 10])  // 29900 × 10/30 = 9966.67 → 9967
        #expect(subscription.billingPeriod(containing: day(2026, 11, 20)) == nil)
    }

    @Test("cancel at period end: that period is billed in full and is the last")
    func cancelAtPeriodEnd() throws {
        var subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        subscription.cancel(.atPeriodEnd(requestedAt: day(2026, 12, 10)))
        #expect(subscription.endsAt == day(2027, 1, 1))
        let december = try #require(subscription.billingPeriod(1))
        #expect(december.billed == december.calendarPeriod)
        #expect(subscription.billingPeriod(2) == nil)
    }

    @Test("canceled during the trial: at period end it ends with the trial, now it ends then; no period is ever billed")
    func cancelDuringTrial() {
        for (cancellation, end) in [
            (Cancellation.atPeriodEnd(requestedAt: day(2026, 11, 5)), day(2026, 11, 15)), (.immediately(at: day(2026, 11, 5)), day(2026, 11, 5)),
            // Before the start: never earlier than the start.
            (.immediately(at: day(2026, 10, 5)), day(2026, 11, 1)),
        ] {
            var subscription = Subscription(plan: .starter, start: day(2026, 11, 1), trialEnd: day(2026, 11, 15))
            subscription.cancel(cancellation)
            #expect(subscription.endsAt == end, "\(cancellation)")
            #expect(subscription.billingPeriod(0) == nil, "\(cancellation)")
            #expect(subscription.billingPeriod(containing: day(2026, 11, 20)) == nil, "\(cancellation)")
            // The trial held until the end: usage after it is no subscription's.
            #expect(subscription.heldTrial?.end == (end > day(2026, 11, 1) ? end : nil), "\(cancellation)")
        }
    }

    @Test("the upcoming invoice of an open period prices the usage so far")
    func upcoming() throws {
        let subscription = Subscription(plan: .starter, start: day(2026, 11, 1))
        let preview = try #require(
            try InvoiceCalculator.upcomingInvoice(
                of: subscription, asOf: day(2026, 11, 20), values: ["estimates": q("52")], taxBasisPoints: 725))
        #expect(amounts(preview) == [29_900, 1000])
        #expect(preview.tax == 2240)  // 30900 × 7.25 % = 2240.25
        #expect(preview.period == Period(start: day(2026, 11, 1), end: day(2026, 12, 1)))
        let trialOnly = Subscription(plan: .starter, start: day(2026, 11, 1), trialEnd: day(2026, 12, 1))
        #expect(try InvoiceCalculator.upcomingInvoice(of: trialOnly, asOf: day(2026, 11, 20), values: [:], taxBasisPoints: 0) == nil)
    }

    @Test("fractional overage rates are billed up to the next cent")
    func fractionalRate() throws {
        let plan = Plan(
            slug: "metered", name: "Metered", baseFee: 0, terms: ["api_calls": MetricTerms(quota: q("0"), overageRate: try UnitPrice(parsing: "0.3"))]
        )
        let subscription = Subscription(plan: plan, start: day(2026, 11, 1))
        let draft = try InvoiceCalculator.invoice(
            for: try #require(subscription.billingPeriod(0)), of: subscription, values: ["api_calls": q("1001")], taxBasisPoints: 0)
        #expect(amounts(draft) == [0, 301])  // 300.3 → 301
        #expect(draft.lines[1].quantity == q("1001"))
        // Late usage at a fractional rate: each charge rounds up on its own, the quantity is exact.
        let late = LateUsage(period: draft.period, metric: "api_calls", billedValue: q("1001"), currentValue: q("1005"), plan: plan)
        let line = try #require(try InvoiceCalculator.adjustmentLines([late]).first)
        #expect(line.quantity == q("4"))
        #expect(line.unitPrice == (try UnitPrice(parsing: "0.3")))
        #expect(line.amount == 1)  // ceil(301.5) − ceil(300.3) = 302 − 301, while 4 × 0.3 = 1.2
    }
}
