/// How a plan prices one metric's value over a period (SPEC §2.1). With v the value and
/// b = max(0, v − included):
/// - `standard`: ceil(b × unit price) — the seeded plans, included = quota;
/// - `graduated`: each tier prices the part of v inside it, plus its flat fee when
///   that part is not empty; a line per tier used;
/// - `volume`: the tier v falls in prices every unit, plus its flat fee; nothing at 0;
/// - `package`: ceil(b / size) packages at a fixed price each.
public enum ChargeModel: Sendable, Hashable {
    case standard(included: Quantity, unitPrice: UnitPrice)
    case graduated([PriceTier])
    case volume([PriceTier])
    case package(included: Quantity, size: Quantity, price: Cents)

    /// The model's name as the catalog writes it.
    public var name: String {
        switch self {
        case .standard: "standard"
        case .graduated: "graduated"
        case .volume: "volume"
        case .package: "package"
        }
    }

    /// The usage included before anything is charged (0 for the tiered models).
    public var included: Quantity {
        switch self {
        case .standard(let included, _), .package(let included, _, _): included
        case .graduated, .volume: .zero
        }
    }

    /// What a period value of `value` costs, line by line (empty when nothing is charged).
    /// Exact: each line rounds up to a whole cent once, no intermediate rounding.
    public func lines(for value: Quantity) throws(BillingError) -> [ChargeLine] {
        let value = max(value, .zero)
        switch self {
        case .standard(let included, let unitPrice):
            let billable = value.excess(over: included)
            // A free rate bills nothing and shows nothing (the seeded Enterprise plan).
            guard billable > .zero, unitPrice > .zero else { return [] }
            return [ChargeLine(units: billable, unitPrice: unitPrice, amount: try unitPrice.charge(for: billable))]
        case .graduated(let tiers):
            var lines: [ChargeLine] = []
            var lower = Quantity.zero
            for (index, tier) in tiers.enumerated() {
                guard value > lower else { break }
                let upper = tier.upTo.map { min($0, value) } ?? value
                let units = upper - lower
                if units > .zero {
                    let usage = try tier.unitPrice.charge(for: units)
                    lines.append(
                        ChargeLine(
                            units: units, unitPrice: tier.unitPrice, flat: tier.flat,
                            amount: try Cents.adding(usage, tier.flat, what: "tier \(index + 1)"), tier: index, tierStart: lower,
                            tierEnd: tier.upTo))
                }
                guard let bound = tier.upTo else { break }
                lower = bound
            }
            return lines
        case .volume(let tiers):
            guard value > .zero else { return [] }
            var lower = Quantity.zero
            for (index, tier) in tiers.enumerated() {
                if let bound = tier.upTo, value > bound, index < tiers.count - 1 {
                    lower = bound
                    continue
                }
                let usage = try tier.unitPrice.charge(for: value)
                return [
                    ChargeLine(
                        units: value, unitPrice: tier.unitPrice, flat: tier.flat,
                        amount: try Cents.adding(usage, tier.flat, what: "tier \(index + 1)"), tier: index, tierStart: lower,
                        tierEnd: tier.upTo)
                ]
            }
            return []
        case .package(let included, let size, let price):
            let billable = value.excess(over: included)
            guard billable > .zero, size > .zero else { return [] }
            let packages = (billable.scaled + size.scaled - 1) / size.scaled
            let (amount, overflow) = Int128(price.value).multipliedReportingOverflow(by: packages)
            let (units, unitsOverflow) = packages.multipliedReportingOverflow(by: Quantity.scale)
            guard !overflow, !unitsOverflow, let cents = Int64(exactly: amount) else {
                throw .amountOutOfRange("\(packages) packages at \(price)")
            }
            return [
                ChargeLine(
                    units: Quantity(scaled: units), unitPrice: UnitPrice(cents: price.value), amount: Cents(cents),
                    packages: PackageCount(billable: billable, size: size))
            ]
        }
    }

    /// The whole charge of a period value: the sum of its lines.
    public func charge(for value: Quantity) throws(BillingError) -> Cents {
        var total = Cents.zero
        for line in try lines(for: value) { total = try Cents.adding(total, line.amount, what: "the charge") }
        return total
    }
}

/// One tier of a graduated or volume charge: up to `upTo` (inclusive; nil for the last,
/// open tier), each unit at `unitPrice`, plus `flat` once when the tier is used.
public struct PriceTier: Sendable, Hashable {
    public let upTo: Quantity?
    public let unitPrice: UnitPrice
    public let flat: Cents

    public init(upTo: Quantity?, unitPrice: UnitPrice, flat: Cents = .zero) {
        self.upTo = upTo
        self.unitPrice = unitPrice
        self.flat = flat
    }
}

/// One priced part of a metric's value: what becomes one invoice line.
public struct ChargeLine: Sendable, Hashable {
    /// The units priced (for a package charge, the packages).
    public let units: Quantity
    /// Cents per unit (per package).
    public let unitPrice: UnitPrice
    /// A tier's flat fee, included in `amount`.
    public let flat: Cents
    /// ceil(units × unit price) + flat.
    public let amount: Cents
    /// The tier priced (graduated, volume), counted from 0, with the values it spans:
    /// (tierStart, tierEnd], tierEnd nil for the open tier.
    public let tier: Int?
    public let tierStart: Quantity
    public let tierEnd: Quantity?
    /// What a package charge counted.
    public let packages: PackageCount?

    init(
        units: Quantity, unitPrice: UnitPrice, flat: Cents = .zero, amount: Cents, tier: Int? = nil, tierStart: Quantity = .zero,
        tierEnd: Quantity? = nil, packages: PackageCount? = nil
    ) {
        self.units = units
        self.unitPrice = unitPrice
        self.flat = flat
        self.amount = amount
        self.tier = tier
        self.tierStart = tierStart
        self.tierEnd = tierEnd
        self.packages = packages
    }
}

/// The usage a package charge billed, and its package size.
public struct PackageCount: Sendable, Hashable {
    public let billable: Quantity
    public let size: Quantity
}
