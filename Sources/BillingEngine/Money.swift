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
/// cents per unit (may be fractional)"; §2.1: "at most 6 fractional digits of a
/// cent"), held exactly in millionths of a cent. Negative only on an adjustment line,
/// whose one unit is priced at the (negative) amount.
public struct UnitPrice: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Millionths of a cent per unit: prices keep 6 fractional digits.
    public static let scale: Int128 = 1_000_000
    /// The largest price the catalog takes: a million dollars a unit.
    public static let maximum = UnitPrice(cents: 100_000_000)

    /// Millionths of a cent per unit.
    public let scaled: Int128

    public init(scaled: Int128) {
        self.scaled = scaled
    }

    /// A whole number of cents per unit.
    public init(cents: Int64) {
        self.scaled = Int128(cents) * Self.scale
    }

    /// Parses a plain decimal number of cents per unit (`"10"`, `"0.25"`,
    /// `"0.000001"`, `"-5"`), with at most 6 fractional digits, up to `maximum`.
    public init(parsing text: String) throws(UnitPriceError) {
        let bytes = Array(text.utf8)
        let isDigit = { (byte: UInt8) in byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        let negative = bytes.first == UInt8(ascii: "-")
        let unsigned = bytes.dropFirst(negative ? 1 : 0)
        let whole = unsigned.prefix(while: isDigit)
        var rest = unsigned.dropFirst(whole.count)
        var fraction = rest.prefix(0)
        if rest.first == UInt8(ascii: ".") {
            fraction = rest.dropFirst().prefix(while: isDigit)
            rest = rest.dropFirst(1 + fraction.count)
            guard !fraction.isEmpty else { throw .notANumber(text) }
        }
        guard !whole.isEmpty, rest.isEmpty else { throw .notANumber(text) }
        let significant = fraction.reversed().drop { $0 == UInt8(ascii: "0") }.count
        guard significant <= 6 else { throw .tooManyFractionDigits(significant) }
        // Leading zeros do not count toward the bound; more digits than it has are over it.
        let digits = whole.drop { $0 == UInt8(ascii: "0") }
        guard digits.count <= 9 else { throw .tooLarge }
        var value: Int128 = 0
        for digit in digits { value = value * 10 + Int128(digit - UInt8(ascii: "0")) }
        var scaled = value * Self.scale
        var unit = Self.scale / 10
        for digit in fraction.prefix(6) {
            scaled += Int128(digit - UInt8(ascii: "0")) * unit
            unit /= 10
        }
        guard scaled <= Self.maximum.scaled else { throw .tooLarge }
        self.scaled = negative ? -scaled : scaled
    }

    public static let zero = UnitPrice(scaled: 0)
    public static func < (lhs: UnitPrice, rhs: UnitPrice) -> Bool { lhs.scaled < rhs.scaled }

    /// Canonical decimal text: no trailing fractional zeros (`"10"`, `"0.25"`, `"0.000001"`).
    public var description: String { FixedPoint.text(scaled, fractionDigits: 6) }

    /// What `quantity` units cost, rounded up to a whole cent (SPEC §2 step 2:
    /// amount = ceil(overage × rate)). Exact: no intermediate rounding. A period total
    /// may be far above one event's bound, so an amount beyond 64-bit cents is an
    /// error for that invoice, never a trap of the process billing everyone.
    public func charge(for quantity: Quantity) throws(BillingError) -> Cents {
        let (product, overflow) = quantity.scaled.multipliedReportingOverflow(by: scaled)
        let denominator = Quantity.scale * Self.scale
        guard !overflow, let cents = Int64(exactly: product / denominator + (product % denominator > 0 ? 1 : 0)) else {
            throw .amountOutOfRange("\(quantity) units at \(self)¢")
        }
        return Cents(cents)
    }
}

/// Why a price was refused.
public enum UnitPriceError: Error, Sendable, Equatable, CustomStringConvertible {
    case notANumber(String)
    case tooManyFractionDigits(Int)
    case tooLarge

    public var description: String {
        switch self {
        case .notANumber(let text): "price \"\(text.prefix(40))\" is not a plain decimal number of cents"
        case .tooManyFractionDigits(let count): "price has \(count) fractional digits of a cent; at most 6 are kept exactly"
        case .tooLarge: "price must be at most 100000000 cents a unit"
        }
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
