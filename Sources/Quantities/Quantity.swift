import Foundation

/// An exact, non-negative usage quantity with at most 4 fractional digits (SPEC §2
/// "Units", §3 "quantity"), held as a count of ten-thousandths: one type from the wire
/// (`UsageEvents` parses an event's quantity into it) to the bill (`BillingEngine`
/// aggregates, compares and prices it). `init(parsing:)` is SPEC §3's rule for one event;
/// `init(parsingTotal:)` is the aggregate's, read back from the database.
///
/// Parsing never goes through `Double`: `"1000.5"` and the JSON number `1000.5`
/// become exactly 10_005_000 ten-thousandths. Arithmetic on `Int128` means a sum of
/// any realistic number of maximal events (1e12 each) cannot overflow; an
/// impossible one traps instead of wrapping.
public struct Quantity: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// Ten-thousandths per unit: quantities keep 4 fractional digits.
    public static let scale: Int128 = 10_000
    /// The largest quantity one event may carry (SPEC §3: 0 ≤ q ≤ 1e12).
    public static let maximumPerEvent = Quantity(units: 1_000_000_000_000)
    public static let zero = Quantity(scaled: 0)

    /// The quantity in ten-thousandths of a unit.
    public let scaled: Int128

    public init(scaled: Int128) {
        self.scaled = scaled
    }

    /// A whole number of units.
    public init(units: Int64) {
        self.scaled = Int128(units) * Self.scale
    }

    /// A whole number of units written as a literal: `quantity: 1`.
    public init(integerLiteral units: Int64) {
        self.init(units: units)
    }

    /// Whether one event may carry it (SPEC §3: 0 ≤ q ≤ 1e12).
    public var isValidPerEvent: Bool { scaled >= 0 && self <= Self.maximumPerEvent }

    /// Parses a plain decimal (`"12"`, `"0.5"`, `"1000.0001"`, `"1e3"`), exactly.
    /// Accepts what a JSON number or decimal string may hold; refuses signs other
    /// than a leading minus (reported as negative), more than 4 fractional digits,
    /// NaN and infinities, and values above 1e12 — each with its own error.
    public init(parsing text: String) throws(QuantityError) {
        self = try QuantityParser(text: text, maximum: .perEvent).parse()
    }

    /// The largest aggregate the database stores (`numeric(38,4)`: below 1e34).
    public static let maximumTotal = Quantity(scaled: 99_999_999_999_999_999_999_999_999_999_999_999_999)

    /// Parses an aggregate read back from the database — a period's sum, a rollup, a
    /// billed value, an alert threshold — exactly, in the database's whole range
    /// (`numeric(38,4)`). A total is not an event: it may be far above 1e12, and
    /// reading it with the per-event bound would stop counting and billing the tenant.
    public init(parsingTotal text: String) throws(QuantityError) {
        self = try QuantityParser(text: text, maximum: .total).parse()
    }

    public static func + (lhs: Quantity, rhs: Quantity) -> Quantity { Quantity(scaled: lhs.scaled + rhs.scaled) }
    public static func - (lhs: Quantity, rhs: Quantity) -> Quantity { Quantity(scaled: lhs.scaled - rhs.scaled) }
    public static func < (lhs: Quantity, rhs: Quantity) -> Bool { lhs.scaled < rhs.scaled }
    public static func += (lhs: inout Quantity, rhs: Quantity) { lhs = lhs + rhs }

    /// `max(0, self − quota)`: the part of a period's value above its quota.
    public func excess(over quota: Quantity) -> Quantity {
        self > quota ? self - quota : .zero
    }

    /// Canonical decimal text: no trailing fractional zeros (`"1000.5"`, `"4"`).
    public var description: String { FixedPoint.text(scaled, fractionDigits: 4) }
}

/// Exact decimals held as an integer count of 10^-digits (a quantity's ten-thousandths, a
/// price's millionths of a cent).
public enum FixedPoint {
    /// `scaled` × 10^-`fractionDigits` as canonical text: no trailing fractional zeros
    /// (`1000.5`, `4`, `-0.000001`).
    public static func text(_ scaled: Int128, fractionDigits: Int) -> String {
        let unit = (0..<fractionDigits).reduce(UInt128(1)) { value, _ in value * 10 }
        let magnitude = scaled.magnitude
        var fraction = magnitude % unit
        var text = (scaled < 0 ? "-" : "") + String(magnitude / unit)
        guard fraction != 0 else { return text }
        var digits = fractionDigits
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let fractionText = String(fraction)
        text += "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
        return text
    }
}

extension Quantity: Codable {
    /// Through Foundation's coders a quantity is a JSON number, which they carry as a
    /// `Decimal` (exact to 38 digits, so exact for every quantity). Tally's own wire code
    /// writes and reads its text instead (`QuotaState`, `UsageEventValidator`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try (try? container.decode(String.self)) ?? container.decode(Decimal.self).description
        do {
            self = try Quantity(parsingTotal: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "\(error)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Decimal(string: description, locale: Locale(identifier: "en_US_POSIX")) ?? 0)
    }
}

/// Why a quantity was refused, with the rule it broke (SPEC §3).
public enum QuantityError: Error, Sendable, Equatable, CustomStringConvertible {
    case notANumber(String)
    case negative
    case tooManyFractionDigits(Int)
    /// Above 1e12, one event's bound.
    case tooLarge
    /// Not below 1e34, what the database stores for a total.
    case totalTooLarge

    public var description: String {
        switch self {
        case .notANumber(let text): "quantity \"\(text.prefix(40))\" is not a decimal number"
        case .negative: "quantity must not be negative"
        case .tooManyFractionDigits(let count): "quantity has \(count) fractional digits; at most 4 are kept exactly"
        case .tooLarge: "quantity must be at most 1e12"
        case .totalTooLarge: "a total must be below 1e34"
        }
    }
}

/// A byte-level decimal parser: digits, an optional fraction and an optional
/// exponent, as JSON numbers are written.
private struct QuantityParser {
    enum Maximum {
        /// 1e12: one event (SPEC §3).
        case perEvent
        /// Below 1e34: what a `numeric(38,4)` column holds.
        case total

        /// Digits of the largest value in ten-thousandths.
        var digits: Int { self == .perEvent ? 17 : 38 }
        var scaled: Int128 { self == .perEvent ? Quantity.maximumPerEvent.scaled : Quantity.maximumTotal.scaled }
    }

    let text: String
    let maximum: Maximum

    func parse() throws(QuantityError) -> Quantity {
        var bytes = Array(text.utf8)[...]
        let lowered = text.lowercased()
        guard !["nan", "-nan", "inf", "-inf", "infinity", "-infinity", "+inf", "+infinity"].contains(lowered) else {
            throw .notANumber(text)
        }
        var negative = false
        if bytes.first == UInt8(ascii: "-") {
            negative = true
            bytes = bytes.dropFirst()
        }
        var digits: [UInt8] = []
        var fractionDigits = 0
        var seenPoint = false
        while let byte = bytes.first, byte != UInt8(ascii: "e"), byte != UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if byte == UInt8(ascii: ".") {
                guard !seenPoint else { throw .notANumber(text) }
                seenPoint = true
            } else if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                digits.append(byte - UInt8(ascii: "0"))
                if seenPoint { fractionDigits += 1 }
            } else {
                throw .notANumber(text)
            }
        }
        guard !digits.isEmpty, !(seenPoint && fractionDigits == 0) else { throw .notANumber(text) }
        let exponent = try parseExponent(bytes)
        // Value = digits × 10^(exponent − fractionDigits); trailing zeros do not count as precision.
        while fractionDigits - exponent > 0, digits.count > 1, digits.last == 0 {
            digits.removeLast()
            fractionDigits -= 1
        }
        if digits.allSatisfy({ $0 == 0 }) { return .zero }
        if negative { throw .negative }
        let shift = exponent - fractionDigits + 4  // power of ten that turns digits into ten-thousandths
        let significant = digits.drop { $0 == 0 }
        let tooLarge: QuantityError = maximum == .perEvent ? .tooLarge : .totalTooLarge
        guard significant.count + shift <= maximum.digits else { throw tooLarge }
        guard shift >= 0 else {
            // Out of range is said before too precise: the ten-thousandths below the value
            // (its last digit is not 0) must stay below the maximum.
            var floor: Int128 = 0
            for digit in significant.dropLast(-shift) { floor = floor * 10 + Int128(digit) }
            if floor >= maximum.scaled { throw tooLarge }
            throw .tooManyFractionDigits(fractionDigits - exponent)
        }
        var scaled: Int128 = 0
        for digit in significant { scaled = scaled * 10 + Int128(digit) }
        for _ in 0..<shift { scaled *= 10 }
        guard scaled <= maximum.scaled else { throw maximum == .perEvent ? .tooLarge : .totalTooLarge }
        return Quantity(scaled: scaled)
    }

    private func parseExponent(_ rest: ArraySlice<UInt8>) throws(QuantityError) -> Int {
        guard !rest.isEmpty else { return 0 }
        var bytes = rest.dropFirst()  // the "e"
        var sign = 1
        if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            sign = first == UInt8(ascii: "-") ? -1 : 1
            bytes = bytes.dropFirst()
        }
        guard !bytes.isEmpty, bytes.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { throw .notANumber(text) }
        // Leading zeros are allowed (`1e00003`, as JSON allows); more than 4 digits after them are not.
        bytes = bytes.drop { $0 == UInt8(ascii: "0") }
        guard bytes.count <= 4 else { throw .notANumber(text) }
        return sign * bytes.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }
}
