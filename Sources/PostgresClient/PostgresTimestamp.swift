import CivilTime
import Foundation

/// An exact instant with microsecond resolution, PostgreSQL's own `timestamptz`
/// precision, so values round-trip without the rounding of a `Double`-based `Date`.
public struct PostgresTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// The nearest microsecond to `date`.
    public init(_ date: Date) {
        self.microsecondsSinceEpoch = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    public var date: Date { Date(timeIntervalSince1970: Double(microsecondsSinceEpoch) / 1_000_000) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch }

    /// ISO 8601 in UTC with six fractional digits, a form PostgreSQL parses exactly.
    public var description: String {
        var text: [UInt8] = []
        text.reserveCapacity(27)
        if TimestampText.write(microsecondsSinceEpoch: microsecondsSinceEpoch, into: &text) {
            return String(decoding: text, as: UTF8.self)
        }
        // A year beyond four digits, all of them.
        let seconds = microsecondsSinceEpoch.floorDivided(by: 1_000_000)
        let days = seconds.floorDivided(by: 86_400)
        let secondOfDay = seconds - days * 86_400
        let date = CivilDate(daysSinceEpoch: days)
        return String(
            format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06lldZ", date.year, date.month, date.day, secondOfDay / 3600,
            secondOfDay % 3600 / 60, secondOfDay % 60, microsecondsSinceEpoch - seconds * 1_000_000)
    }

    /// Parses PostgreSQL's text output, e.g. `2026-11-24 18:40:00.123+00` or `…+05:30`.
    init?(parsing text: String) {
        var text = text
        guard let parsed = text.withUTF8({ Self(parsing: $0) }) else { return nil }
        self = parsed
    }

    /// Parses the UTF-8 bytes of PostgreSQL's text output.
    ///
    /// Years past 9999 (five or six digits, as PostgreSQL writes them) are read too: Tally
    /// never writes one, but a row holding one, written before that was refused, made every
    /// read of its table's rows for that tenant fail — the Aggregator's batches among them.
    init?(parsing bytes: UnsafeBufferPointer<UInt8>) {
        var digits = 0
        while digits < min(bytes.count, 6), DecimalDigits.digit(bytes[digits]) != nil { digits += 1 }
        let shift = digits - 4
        guard shift >= 0, bytes.count >= 19 + shift, let year = DecimalDigits.number(bytes, 0, digits),
            let month = DecimalDigits.number(bytes, 5 + shift, 2), let day = DecimalDigits.number(bytes, 8 + shift, 2),
            let hour = DecimalDigits.number(bytes, 11 + shift, 2), let minute = DecimalDigits.number(bytes, 14 + shift, 2),
            let second = DecimalDigits.number(bytes, 17 + shift, 2)
        else { return nil }
        var index = 19 + shift
        var micros: Int64 = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < bytes.count, let digit = DecimalDigits.digit(bytes[index]) {
                if digits < 6 { micros = micros * 10 + Int64(digit) }
                digits += 1
                index += 1
            }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        var offsetSeconds: Int64 = 0
        if index < bytes.count {
            let sign: Int64 = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            guard bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"),
                let hours = DecimalDigits.number(bytes, index + 1, 2)
            else { return nil }
            var offset = Int64(hours) * 3600
            var next = index + 3
            if next < bytes.count, bytes[next] == UInt8(ascii: ":"), let minutes = DecimalDigits.number(bytes, next + 1, 2) {
                offset += Int64(minutes) * 60
                next += 3
            }
            if next < bytes.count, bytes[next] == UInt8(ascii: ":"), let seconds = DecimalDigits.number(bytes, next + 1, 2) {
                offset += Int64(seconds)
                next += 3
            }
            offsetSeconds = sign * offset
            index = next
        }
        // Anything after it (" BC": a year before 1 AD, which Tally never writes) is refused, not read as AD.
        guard index == bytes.count else { return nil }
        let days = CivilDate(year: Int64(year), month: Int64(month), day: Int64(day)).daysSinceEpoch
        let local = days * 86_400 + Int64(hour) * 3600 + Int64(minute) * 60 + Int64(second)
        // PostgreSQL's last timestamp (294276-12-31) is past Int64's microseconds (294247): nil, not a trap.
        let (seconds, late) = (local - offsetSeconds).multipliedReportingOverflow(by: 1_000_000)
        let (microseconds, later) = seconds.addingReportingOverflow(micros)
        guard !late, !later else { return nil }
        self.microsecondsSinceEpoch = microseconds
    }
}
