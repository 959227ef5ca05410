/// An amount of money in integer cents (SPEC §2 "Units"). Negative amounts are
/// credits: late-usage adjustments may go either way.
public struct Cents: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public let value: Int64

    public init(_ value: Int64) {
        self.value = value
    }

    public init(integerLiteral value: Int64) {
        self.value = value
    }

    public static let zero = Cents(0)

    public static func + (lhs: Cents, rhs: Cents) -> Cents { Cents(lhs.value + rhs.value) }
    public static func - (lhs: Cents, rhs: Cents) -> Cents { Cents(lhs.value - rhs.value) }
    public static func < (lhs: Cents, rhs: Cents) -> Bool { lhs.value < rhs.value }
    public static func += (lhs: inout Cents, rhs: Cents) { lhs = lhs + rhs }

    /// `"$1,234.56"`-style text without the currency: `"1234.56"`, `"-0.05"`.
    public var description: String {
        let magnitude = value.magnitude
        let fraction = magnitude % 100
        return (value < 0 ? "-" : "") + "\(magnitude / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
    }
}

/// A price per unit of usage in cents, possibly fractional (SPEC §2: "a rate is
/// cents per unit (may be fractional)"), held exactly in ten-thousandths of a cent.
public struct UnitPrice: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Ten-thousandths of a cent per unit.
    public let scaled: Int128

    public init(scaled: Int128) {
        self.scaled = scaled
    }

    /// A whole number of cents per unit.
    public init(cents: Int64) {
        self.scaled = Int128(cents) * Quantity.scale
    }

    /// Parses `"10"`, `"0.25"` (cents per unit) with at most 4 fractional digits.
    public init(parsing text: String) throws(QuantityError) {
        self.scaled = try Quantity(parsing: text).scaled
    }

    public static let zero = UnitPrice(scaled: 0)
    public static func < (lhs: UnitPrice, rhs: UnitPrice) -> Bool { lhs.scaled < rhs.scaled }

    public var description: String { Quantity(scaled: scaled).description }

    /// What `quantity` units cost, rounded up to a whole cent (SPEC §2 step 2:
    /// amount = ceil(overage × rate)). Exact: no intermediate rounding. A period total
    /// may be far above one event's bound, so an amount beyond 64-bit cents is an
    /// error for that invoice, never a trap of the process billing everyone.
    public func overageCharge(for quantity: Quantity) throws(BillingError) -> Cents {
        let (product, overflow) = quantity.scaled.multipliedReportingOverflow(by: scaled)
        let denominator = Quantity.scale * Quantity.scale
        guard !overflow, let cents = Int64(exactly: product / denominator + (product % denominator > 0 ? 1 : 0)) else {
            throw .amountOutOfRange("\(quantity) units at \(self)¢")
        }
        return Cents(cents)
    }
}

/// Why an invoice cannot be computed: only amounts too large for 64-bit cents
/// (about 92 quadrillion dollars), which only absurd usage reaches.
public enum BillingError: Error, Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    case amountOutOfRange(String)

    public var description: String {
        switch self {
        case .amountOutOfRange(let what):
            "the amount for \(what) exceeds what an invoice can hold (64-bit cents); check the usage for a runaway meter"
        }
    }

    public var debugDescription: String { description }
}

extension Cents {
    /// `lhs + rhs`, or `BillingError.amountOutOfRange` instead of an overflow trap.
    static func adding(_ lhs: Cents, _ rhs: Cents, what: @autoclosure () -> String) throws(BillingError) -> Cents {
        let (sum, overflow) = lhs.value.addingReportingOverflow(rhs.value)
        guard !overflow else { throw .amountOutOfRange(what()) }
        return Cents(sum)
    }
}

/// The two roundings SPEC §2 names, each where the rule says.
public enum Rounding {
    /// `numerator / denominator` rounded half up — on the magnitude, so a credit
    /// rounds exactly like the charge it mirrors (−2.5 → −3, 2.5 → 3). Used for
    /// proration (step 1) and tax (step 4). `denominator` must be positive.
    public static func halfUp(_ numerator: Int128, dividedBy denominator: Int128) -> Cents {
        precondition(denominator > 0, "rounding divides by a positive number")
        let magnitude = numerator.magnitude
        let divisor = denominator.magnitude
        let value = Int64((2 * magnitude + divisor) / (2 * divisor))  // floor(m/d + 1/2)
        return Cents(numerator < 0 ? -value : value)
    }

    /// `numerator / denominator` rounded toward +∞ (step 2: overage is billed up to
    /// the next whole cent). `denominator` must be positive.
    public static func ceiling(_ numerator: Int128, dividedBy denominator: Int128) -> Cents {
        precondition(denominator > 0, "rounding divides by a positive number")
        let quotient = numerator / denominator
        let up = numerator % denominator > 0 ? 1 : 0
        return Cents(Int64(quotient) + Int64(up))
    }

    /// `amount × basisPoints / 10 000`, rounded half up (step 4's tax).
    public static func tax(on amount: Cents, basisPoints: Int) -> Cents {
        halfUp(Int128(amount.value) * Int128(basisPoints), dividedBy: 10_000)
    }
}

/// A rate in basis points (725 = 7.25 %), as people read it.
public enum BasisPoints {
    /// "7.25%", "7.5%", "7%", "0.05%": no trailing zeros.
    public static func percentText(_ basisPoints: Int) -> String {
        var fraction = String(basisPoints % 100)
        if fraction.count < 2 { fraction = "0" + fraction }
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(basisPoints / 100)" + (fraction.isEmpty ? "" : "." + fraction) + "%"
    }
}
