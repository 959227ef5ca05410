import BillingEngine
import Testing

@Suite("Quantities, cents and rounding (SPEC §2 Units)")
struct MoneyTests {
    @Test(
        "decimal text parses exactly, without Double",
        arguments: [
            ("0", 0), ("1", 10_000), ("1000.5", 10_005_000), ("0.0001", 1), ("1.50000", 15_000), ("1e3", 10_000_000),
            ("1.5E+2", 1_500_000), ("25e-4", 25), ("1000000000000", 10_000_000_000_000_000), ("1e12", 10_000_000_000_000_000),
            ("-0", 0), ("0.1", 1_000), ("123456789.1234", 1_234_567_891_234),
        ] as [(String, Int64)])
    func parses(text: String, scaled: Int64) throws {
        #expect(try Quantity(parsing: text).scaled == Int128(scaled))
    }

    @Test(
        "bad quantities are refused with the rule they broke",
        arguments: [
            ("-1", QuantityError.negative), ("-0.0001", .negative), ("1.00001", .tooManyFractionDigits(5)),
            ("1e-5", .tooManyFractionDigits(5)), ("1000000000000.0001", .tooLarge), ("1e13", .tooLarge), ("1e9999", .tooLarge),
            ("NaN", .notANumber("NaN")), ("Infinity", .notANumber("Infinity")), ("-inf", .notANumber("-inf")),
            ("", .notANumber("")), ("1.", .notANumber("1.")), ("1..2", .notANumber("1..2")), ("0x10", .notANumber("0x10")),
            ("1 ", .notANumber("1 ")), ("+1", .notANumber("+1")), ("1e", .notANumber("1e")),
        ] as [(String, QuantityError)])
    func refuses(text: String, error: QuantityError) {
        #expect(throws: error) { try Quantity(parsing: text) }
    }

    @Test("a quantity prints its canonical decimal and parses back", arguments: ["0", "4", "1000.5", "0.0001", "12.034", "1000000000000"])
    func roundTrip(text: String) throws {
        #expect(try Quantity(parsing: text).description == text)
    }

    @Test("round-half-up at the .5 boundary, on the magnitude for credits")
    func halfUp() {
        #expect(Rounding.halfUp(5, dividedBy: 2) == 3)
        #expect(Rounding.halfUp(4, dividedBy: 2) == 2)
        #expect(Rounding.halfUp(7, dividedBy: 3) == 2)  // 2.33
        #expect(Rounding.halfUp(8, dividedBy: 3) == 3)  // 2.67
        #expect(Rounding.halfUp(149, dividedBy: 100) == 1)
        #expect(Rounding.halfUp(150, dividedBy: 100) == 2)
        #expect(Rounding.halfUp(-5, dividedBy: 2) == -3)
        #expect(Rounding.halfUp(-149, dividedBy: 100) == -1)
        #expect(Rounding.halfUp(-150, dividedBy: 100) == -2)
        #expect(Rounding.halfUp(0, dividedBy: 7) == 0)
    }

    @Test("ceiling for overage: any fraction of a cent is a cent; exact values stay")
    func ceiling() throws {
        #expect(Rounding.ceiling(1, dividedBy: 10_000) == 1)
        #expect(Rounding.ceiling(10_000, dividedBy: 10_000) == 1)
        #expect(Rounding.ceiling(10_001, dividedBy: 10_000) == 2)
        #expect(Rounding.ceiling(0, dividedBy: 3) == 0)
        #expect(Rounding.ceiling(-5, dividedBy: 2) == -2)  // toward +∞
        let quarterCent = try UnitPrice(parsing: "0.25")
        #expect(try quarterCent.charge(for: try Quantity(parsing: "3")) == 1)  // 0.75 → 1
        #expect(try quarterCent.charge(for: try Quantity(parsing: "4")) == 1)
        #expect(try quarterCent.charge(for: try Quantity(parsing: "4.0004")) == 2)
        #expect(try UnitPrice(cents: 10).charge(for: try Quantity(parsing: "0.5")) == 5)
    }

    @Test(
        "a stored total parses in the database's whole range (numeric(38,4)); one event stays bounded by 1e12",
        arguments: [
            "1000000000000.0001", "2000000000002.5", "1e20", "99999999999999999999999999999999.9999",
        ])
    func totals(text: String) throws {
        #expect(throws: QuantityError.tooLarge) { try Quantity(parsing: text) }
        let total = try Quantity(parsingTotal: text)
        #expect(total > Quantity.maximumPerEvent)
        #expect(try Quantity(parsingTotal: total.description) == total)
    }

    @Test("a total at or above 1e34 is refused as a total", arguments: ["1e34", "100000000000000000000000000000000000", "1e9999"])
    func totalsRefused(text: String) {
        #expect(throws: QuantityError.totalTooLarge) { try Quantity(parsingTotal: text) }
    }

    @Test("an overage beyond 64-bit cents is an error naming it, never a trap; the largest that fits is exact")
    func chargeOutOfRange() throws {
        let tenCents = UnitPrice(cents: 10)
        // Int64.max = 9,223,372,036,854,775,807¢: 922,337,203,685,477,580.7 units at 10¢ fit exactly.
        #expect(try tenCents.charge(for: Quantity(parsingTotal: "922337203685477580.7")) == Cents(Int64.max))
        #expect(throws: BillingError.self) { try tenCents.charge(for: Quantity(parsingTotal: "922337203685477580.8")) }
        // Beyond Int128 in the product (1e34 units × a large rate), still an error.
        #expect(throws: BillingError.self) { try UnitPrice(cents: 1_000_000_000_000).charge(for: .maximumTotal) }
        // A subtotal of two lines that each fit but not together.
        let plan = Plan(
            slug: "p", name: "P", baseFee: 0,
            terms: [
                "a": MetricTerms(quota: .zero, overageRate: tenCents), "b": MetricTerms(quota: .zero, overageRate: tenCents),
            ])
        let values = ["a": try Quantity(parsingTotal: "500000000000000000"), "b": try Quantity(parsingTotal: "500000000000000000")]
        let subscription = Subscription(plan: plan, start: Instant(year: 2026, month: 1, day: 1))
        let period = try #require(subscription.billingPeriod(0))
        #expect(throws: BillingError.self) { try InvoiceCalculator.invoice(for: period, of: subscription, values: values, taxBasisPoints: 0) }
    }

    @Test("tax at 7.25 % rounds half up, for charges and credits")
    func tax() {
        #expect(Rounding.tax(on: 29_900, basisPoints: 725) == 2168)  // 2167.75
        #expect(Rounding.tax(on: 200, basisPoints: 725) == 15)  // 14.5
        #expect(Rounding.tax(on: 199, basisPoints: 725) == 14)  // 14.4275
        #expect(Rounding.tax(on: -200, basisPoints: 725) == -15)
        #expect(Rounding.tax(on: 12_345, basisPoints: 0) == 0)
    }

    @Test("sums of the largest quantities do not overflow")
    func noOverflow() {
        var total = Quantity.zero
        for _ in 0..<1_000_000 { total += Quantity.maximumPerEvent }
        #expect(total == Quantity(scaled: Quantity.maximumPerEvent.scaled * 1_000_000))
        #expect(total.description == "1000000000000000000")
    }

    @Test("cents print as decimal money text")
    func centsText() {
        #expect(Cents(35_905).description == "359.05")
        #expect(Cents(-5).description == "-0.05")
        #expect(Cents(0).description == "0.00")
    }
}
