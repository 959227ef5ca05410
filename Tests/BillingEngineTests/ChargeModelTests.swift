import BillingEngine
import Testing

/// The charge models of SPEC §2.1, each against a reference written here from the
/// SPEC's words (integers in the smallest units, no engine code), over random tier
/// tables and values, and at the edges: a value exactly on a bound, 4 decimals of a
/// unit, 6 decimals of a cent, zero usage.
@Suite("Charge models (SPEC §2.1)")
struct ChargeModelTests {
    /// SplitMix64: the same cases for a seed on every machine.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476C_E5E4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// A tier as the reference reads it: bound and price in ten-thousandths of a unit and
    /// millionths of a cent, flat fee in cents.
    struct RawTier {
        let upTo: Int128?
        let price: Int128
        let flat: Int64
    }

    /// ceil(units × price) in cents: units in 10⁻⁴, price in 10⁻⁶ cent.
    static func ceilCents(_ units: Int128, _ price: Int128) -> Int64 {
        let product = units * price
        let denominator: Int128 = 10_000_000_000
        return Int64(product / denominator + (product % denominator > 0 ? 1 : 0))
    }

    /// SPEC §2.1 graduated, per tier: (units inside it, amount), tiers with no units left out.
    static func referenceGraduated(_ tiers: [RawTier], _ value: Int128) -> [(Int128, Int64)] {
        var bounds: [(low: Int128, high: Int128?)] = []
        var low: Int128 = 0
        for tier in tiers {
            bounds.append((low, tier.upTo))
            low = tier.upTo ?? low
        }
        var result: [(Int128, Int64)] = []
        for (index, bound) in bounds.enumerated() {
            let top = bound.high.map { Swift.min($0, value) } ?? value
            let units = Swift.max(0, top - bound.low)
            if units > 0 { result.append((units, ceilCents(units, tiers[index].price) + tiers[index].flat)) }
        }
        return result
    }

    /// SPEC §2.1 volume: the first tier with v ≤ up_to prices every unit; nothing at 0.
    static func referenceVolume(_ tiers: [RawTier], _ value: Int128) -> Int64 {
        guard value > 0 else { return 0 }
        let tier = tiers.first { $0.upTo.map { value <= $0 } ?? true }!
        return ceilCents(value, tier.price) + tier.flat
    }

    /// A random valid tier table: 1 to 6 tiers, increasing bounds with up to 4
    /// decimals, prices with up to 6 decimals of a cent (some free), some flat fees.
    static func randomTiers(_ g: inout Generator) -> [RawTier] {
        let count = Int.random(in: 1...6, using: &g)
        var bound: Int128 = 0
        return (0..<count).map { index in
            bound += Int128(Int64.random(in: 1...50_000_000, using: &g))
            let price: Int128 = Int.random(in: 0..<5, using: &g) == 0 ? 0 : Int128(Int64.random(in: 1...2_000_000_000, using: &g))
            let flat: Int64 = Bool.random(using: &g) ? 0 : Int64.random(in: 1...100_000, using: &g)
            return RawTier(upTo: index == count - 1 ? nil : bound, price: price, flat: flat)
        }
    }

    static func engineTiers(_ tiers: [RawTier]) -> [PriceTier] {
        tiers.map { PriceTier(upTo: $0.upTo.map(Quantity.init(scaled:)), unitPrice: UnitPrice(scaled: $0.price), flat: Cents($0.flat)) }
    }

    /// Values around the table: zero, on each bound, a ten-thousandth either side, and random.
    static func values(_ tiers: [RawTier], _ g: inout Generator) -> [Int128] {
        var values: [Int128] = [0, 1]
        for bound in tiers.compactMap(\.upTo) { values += [bound - 1, bound, bound + 1] }
        let top = (tiers.compactMap(\.upTo).last ?? 10_000_000) * 2
        values += (0..<8).map { _ in Int128(Int64.random(in: 0...Int64(top), using: &g)) }
        return values.filter { $0 >= 0 }
    }

    @Test("graduated: 3,000 random tables, every value priced tier by tier as the reference says")
    func graduatedProperty() throws {
        var g = Generator(state: 17)
        for table in 0..<3_000 {
            let tiers = Self.randomTiers(&g)
            let model = ChargeModel.graduated(Self.engineTiers(tiers))
            for value in Self.values(tiers, &g) {
                let lines = try model.lines(for: Quantity(scaled: value))
                let expected = Self.referenceGraduated(tiers, value)
                #expect(lines.map(\.units.scaled) == expected.map(\.0), "table \(table), value \(value)")
                #expect(lines.map(\.amount.value) == expected.map(\.1), "table \(table), value \(value)")
                #expect(try model.charge(for: Quantity(scaled: value)).value == expected.reduce(0) { $0 + $1.1 })
                // Each line says which tier and what it spans.
                for line in lines {
                    let tier = try #require(line.tier)
                    #expect(line.tierEnd?.scaled == tiers[tier].upTo && line.unitPrice.scaled == tiers[tier].price)
                    #expect(line.flat.value == tiers[tier].flat)
                    #expect(line.tierStart.scaled == (tier == 0 ? 0 : tiers[tier - 1].upTo!))
                }
            }
        }
    }

    @Test("volume: 3,000 random tables, every unit at the tier the value falls in, as the reference says")
    func volumeProperty() throws {
        var g = Generator(state: 23)
        for table in 0..<3_000 {
            let tiers = Self.randomTiers(&g)
            let model = ChargeModel.volume(Self.engineTiers(tiers))
            for value in Self.values(tiers, &g) {
                let lines = try model.lines(for: Quantity(scaled: value))
                let expected = Self.referenceVolume(tiers, value)
                #expect(lines.count == (value > 0 ? 1 : 0), "table \(table), value \(value)")
                #expect(lines.first?.units.scaled ?? 0 == (value > 0 ? value : 0))
                #expect(lines.first?.amount.value ?? 0 == expected, "table \(table), value \(value)")
            }
        }
    }

    @Test("package and standard: 5,000 random charges against ceil(b / size) × price and ceil(b × price)")
    func packageAndStandardProperty() throws {
        var g = Generator(state: 31)
        for _ in 0..<5_000 {
            let included = Int128(Int64.random(in: 0...5_000_000, using: &g)) * (Bool.random(using: &g) ? 1 : 0)
            let size = Int128(Int64.random(in: 1...20_000_000, using: &g))
            let price = Int64.random(in: 0...1_000_000, using: &g)
            let unitPrice = Int128(Int64.random(in: 0...5_000_000_000, using: &g))
            let value = Int128(Int64.random(in: 0...100_000_000, using: &g))
            let billable = Swift.max(0, value - included)
            var packages = billable / size
            if packages * size < billable { packages += 1 }
            let package = ChargeModel.package(included: Quantity(scaled: included), size: Quantity(scaled: size), price: Cents(price))
            #expect(try package.charge(for: Quantity(scaled: value)).value == Int64(packages) * price)
            let lines = try package.lines(for: Quantity(scaled: value))
            #expect(lines.count == (billable > 0 ? 1 : 0))
            #expect(lines.first.map { $0.units.scaled == packages * 10_000 && $0.unitPrice == UnitPrice(cents: price) } ?? true)
            let standard = ChargeModel.standard(included: Quantity(scaled: included), unitPrice: UnitPrice(scaled: unitPrice))
            #expect(try standard.charge(for: Quantity(scaled: value)).value == Self.ceilCents(billable, unitPrice))
            // A free rate or nothing above the included usage: no line at all.
            #expect(try standard.lines(for: Quantity(scaled: value)).count == (billable > 0 && unitPrice > 0 ? 1 : 0))
        }
    }

    @Test("the edges, worked by hand: a value on a bound, a ten-thousandth past it, fractional prices, zero")
    func edges() throws {
        let q = { (text: String) in try Quantity(parsing: text) }
        let p = { (text: String) in try UnitPrice(parsing: text) }
        // 0–1,000 free, 1,000–10,000 at 0.5¢ plus a $5 flat fee, then 0.000125¢.
        let tiers = [
            PriceTier(upTo: try q("1000"), unitPrice: .zero),
            PriceTier(upTo: try q("10000"), unitPrice: try p("0.5"), flat: 500),
            PriceTier(upTo: nil, unitPrice: try p("0.000125")),
        ]
        let graduated = ChargeModel.graduated(tiers)
        // Exactly on the first bound: the second tier is not used (no flat fee).
        #expect(try graduated.lines(for: q("1000")).map(\.amount) == [0])
        // A ten-thousandth past it: 0.0001 × 0.5¢ rounds up to 1¢, and the flat fee.
        #expect(try graduated.lines(for: q("1000.0001")).map(\.amount) == [0, 501])
        #expect(try graduated.lines(for: q("1000.0001"))[1].units == q("0.0001"))
        // 12,345.6789: 1,000 free; 9,000 × 0.5¢ = 4,500 + 500; 2,345.6789 × 0.000125¢ = 0.293…¢ → 1.
        #expect(try graduated.lines(for: q("12345.6789")).map(\.amount) == [0, 5_000, 1])
        #expect(try graduated.charge(for: q("12345.6789")) == 5_001)
        #expect(try graduated.lines(for: .zero).isEmpty)
        let volume = ChargeModel.volume(tiers)
        #expect(try volume.charge(for: q("1000")) == 0)  // on the bound: the first tier
        #expect(try volume.charge(for: q("1000.0001")) == 1_001)  // 500.00005 → 501, plus 500
        #expect(try volume.charge(for: q("10000.0001")) == 2)  // 1.25000001¢ → 2
        #expect(try volume.lines(for: .zero).isEmpty)
        let package = ChargeModel.package(included: try q("100"), size: try q("2.5"), price: 199)
        #expect(try package.charge(for: q("100")) == 0)
        #expect(try package.charge(for: q("102.5")) == 199)  // exactly one package
        #expect(try package.charge(for: q("102.5001")) == 398)
        #expect(try package.lines(for: q("110"))[0].units == q("4"))
        // A count of packages beyond what a quantity holds is an error, even when they are free.
        #expect(throws: BillingError.self) {
            try ChargeModel.package(included: .zero, size: Quantity(scaled: 1), price: 0).lines(for: .maximumTotal)
        }
        // The seeded terms are a standard charge with the quota included.
        let starter = try #require(Plan.starter.terms["api_calls"])
        #expect(starter.charge == .standard(included: 1000, unitPrice: UnitPrice(cents: 10)))
        #expect(try starter.lines(for: q("1000.5")).map(\.amount) == [5])
        #expect(try Plan.enterprise.terms["api_calls"]!.lines(for: q("5000000")).isEmpty)
    }

    @Test("prices keep six decimals of a cent exactly; more, signs other than a minus, or above the bound are refused")
    func prices() throws {
        #expect(try UnitPrice(parsing: "0.000001").scaled == 1)
        #expect(try UnitPrice(parsing: "12.345678000").scaled == 12_345_678)
        #expect(try UnitPrice(parsing: "100000000").description == "100000000")
        #expect(try UnitPrice(parsing: "007.50").description == "7.5")
        #expect(try UnitPrice(parsing: "-5").description == "-5")
        #expect(throws: UnitPriceError.tooManyFractionDigits(7)) { try UnitPrice(parsing: "0.0000001") }
        #expect(throws: UnitPriceError.tooLarge) { try UnitPrice(parsing: "100000000.000001") }
        #expect(throws: UnitPriceError.tooLarge) { try UnitPrice(parsing: "99999999999999999999999999") }
        for text in ["", "1.", ".5", "+1", "1e3", "1,5", "abc", "-"] {
            #expect(throws: UnitPriceError.notANumber(text)) { try UnitPrice(parsing: text) }
        }
        // 1 unit at a millionth of a cent is still a whole cent on the bill.
        #expect(try UnitPrice(scaled: 1).charge(for: Quantity(scaled: 1)) == 1)
    }

    @Test("on an invoice: a line per graduated tier used, one for volume and package; late usage priced with the whole charge")
    func invoiceLines() throws {
        let q = { (text: String) in try! Quantity(parsing: text) }
        let period = Period(
            start: Instant(microsecondsSinceEpoch: 1_798_761_600_000_000), end: Instant(microsecondsSinceEpoch: 1_801_440_000_000_000))
        let plan = Plan(
            slug: "tiered", name: "Tiered", baseFee: 1_000,
            terms: [
                "api_calls": MetricTerms(
                    quota: q("50000"), enforcement: .soft,
                    charge: .graduated([
                        PriceTier(upTo: q("1000"), unitPrice: .zero),
                        PriceTier(upTo: q("10000"), unitPrice: try UnitPrice(parsing: "0.5"), flat: 500),
                        PriceTier(upTo: nil, unitPrice: try UnitPrice(parsing: "0.25")),
                    ])),
                "seats": MetricTerms(
                    quota: nil,
                    charge: .volume([
                        PriceTier(upTo: q("10"), unitPrice: UnitPrice(cents: 1_000)), PriceTier(upTo: nil, unitPrice: UnitPrice(cents: 800)),
                    ])),
                "sms": MetricTerms(quota: nil, charge: .package(included: q("100"), size: q("1000"), price: 2_500)),
            ])
        let lines = try InvoiceCalculator.overageLines(
            plan: plan, values: ["api_calls": q("12000"), "seats": q("12"), "sms": q("2100"), "other": q("5")], period: period)
        #expect(lines.map(\.metric) == ["api_calls", "api_calls", "api_calls", "seats", "sms"])
        #expect(lines.map(\.amount) == [0, 5_000, 500, 9_600, 5_000])
        #expect(lines.map(\.quantity) == [q("1000"), q("9000"), q("2000"), q("12"), q("2")])
        #expect(lines.allSatisfy { $0.kind == .overage && $0.period == period })
        #expect(lines[1].description == "api_calls: 12,000 used, tier 2 (1,000–10,000), plus $5.00 flat")
        // A flat fee in the plan's currency and its minor unit (it read "5.00" in every one).
        for (currency, flat) in [("jpy", "plus ¥500 flat"), ("kwd", "plus KWD 0.500 flat")] {
            let priced = Plan(slug: "tiered", name: "Tiered", currency: currency, baseFee: 1_000, terms: plan.terms)
            let line = try InvoiceCalculator.overageLines(plan: priced, values: ["api_calls": q("12000")], period: period)[1]
            #expect(line.description.hasSuffix(flat), "\(line.description)")
        }
        #expect(lines[2].description == "api_calls: 12,000 used, tier 3 (above 10,000)")
        #expect(lines[3].description == "seats: 12 used, every unit at tier 2 (above 10)")
        #expect(lines[4].description == "sms: 2,100 used, 100 included, 2,000 billed in packages of 1,000")
        // Late usage: 12,000 billed, now 12,500: 125¢ more, one unit at that price.
        let late = LateUsage(period: period, metric: "api_calls", billedValue: q("12000"), currentValue: q("12500"), plan: plan)
        #expect(try late.adjustment() == 125)
        let adjustment = try #require(try InvoiceCalculator.adjustmentLines([late]).first)
        #expect(adjustment.quantity == 1 && adjustment.unitPrice == UnitPrice(cents: 125) && adjustment.amount == 125)
        // Late usage crossing into the next tier brings its flat fee: 900 → 1,100 adds 200 × 0.5¢ + 5.00.
        let crossing = LateUsage(period: period, metric: "api_calls", billedValue: q("900"), currentValue: q("1100"), plan: plan)
        #expect(try crossing.adjustment() == 550)
    }
}
