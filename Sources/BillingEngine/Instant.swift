import CivilTime
import Foundation

/// A UTC instant in whole microseconds since 1970-01-01T00:00:00Z: the precision
/// of event times on the wire (RFC 3339 with six fractional digits) and of
/// PostgreSQL's timestamptz. Integer, so period arithmetic and proration are exact.
public struct Instant: Sendable, Hashable, Comparable, CustomStringConvertible {
    public static let microsecondsPerSecond: Int64 = 1_000_000
    public static let microsecondsPerDay: Int64 = 86_400_000_000

    public let microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// Midnight plus a time of day on a calendar date (UTC). The date must exist.
    public init(year: Int64, month: Int64, day: Int64, hour: Int64 = 0, minute: Int64 = 0, second: Int64 = 0) {
        guard let days = UTCDay(year: Int(year), month: Int(month), day: Int(day)).daysSinceEpoch else {
            preconditionFailure("\(year)-\(month)-\(day) is not a calendar date")
        }
        self.microsecondsSinceEpoch =
            days * Self.microsecondsPerDay
            + ((hour * 60 + minute) * 60 + second) * Self.microsecondsPerSecond
    }

    /// The nearest microsecond to a Foundation date.
    public init(_ date: Date) {
        self.microsecondsSinceEpoch = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    public var date: Date { Date(timeIntervalSince1970: Double(microsecondsSinceEpoch) / 1_000_000) }

    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch }

    /// This instant moved by a number of microseconds.
    public func advanced(byMicroseconds amount: Int64) -> Instant {
        Instant(microsecondsSinceEpoch: microsecondsSinceEpoch + amount)
    }

    /// Microseconds from `self` to `later` (negative if `later` is earlier).
    public func microseconds(to later: Instant) -> Int64 {
        later.microsecondsSinceEpoch - microsecondsSinceEpoch
    }

    /// The calendar date and the microseconds since that day's midnight (UTC).
    var civil: (date: UTCDay, microsecondOfDay: Int64) {
        let days = microsecondsSinceEpoch.floorDivided(by: Self.microsecondsPerDay)
        return (UTCDay(daysSinceEpoch: days), microsecondsSinceEpoch - days * Self.microsecondsPerDay)
    }

    /// ISO 8601 / RFC 3339 text, e.g. `2026-01-31T00:00:00Z` (fraction only when non-zero).
    public var description: String {
        let (date, microOfDay) = civil
        let seconds = microOfDay / Self.microsecondsPerSecond
        func two(_ value: some BinaryInteger) -> String { value < 10 ? "0\(value)" : "\(value)" }
        // Four-digit years, as RFC 3339 and PostgreSQL require ("0013", not "13").
        let year = date.year < 0 ? "-" + String(String(-date.year).paddedTo4) : String(String(date.year).paddedTo4)
        var text = "\(year)-\(two(date.month))-\(two(date.day))T\(two(seconds / 3600)):\(two(seconds % 3600 / 60)):\(two(seconds % 60))"
        let micros = microOfDay % Self.microsecondsPerSecond
        if micros != 0 {
            let digits = String(micros)
            text += "." + String(repeating: "0", count: 6 - digits.count) + digits
        }
        return text + "Z"
    }
}

extension String {
    fileprivate var paddedTo4: String { count >= 4 ? self : String(repeating: "0", count: 4 - count) + self }
}
