import CivilTime

/// How often a subscription bills (SPEC §2 "Periods").
public enum BillingInterval: String, Sendable, Hashable, CaseIterable {
    case monthly = "month"
    case yearly = "year"

    var months: Int64 { self == .monthly ? 1 : 12 }
}

/// A half-open span of time `[start, end)` (SPEC §2: every period is half-open).
public struct Period: Sendable, Hashable, CustomStringConvertible {
    public let start: Instant
    public let end: Instant

    public init(start: Instant, end: Instant) {
        precondition(start <= end, "a period cannot end before it starts")
        self.start = start
        self.end = end
    }

    /// Whether `instant` falls inside: the start does, the end does not.
    public func contains(_ instant: Instant) -> Bool { start <= instant && instant < end }

    /// Length in microseconds.
    public var duration: Int64 { start.microseconds(to: end) }

    /// The overlap of two periods, if any time is shared.
    public func clamped(to other: Period) -> Period? {
        let start = max(self.start, other.start)
        let end = min(self.end, other.end)
        return start < end ? Period(start: start, end: end) : nil
    }

    public var description: String { "[\(start), \(end))" }
}

/// The billing periods of one anchor: period n starts n intervals after the anchor,
/// on the anchor's day of month clamped to the month's length, and is always
/// re-derived from the anchor, never from the previous period (SPEC §2: Jan 31 →
/// Feb 28 or 29 → Mar 31; a Feb 29 yearly anchor bills on Feb 28 in common years).
public struct BillingCalendar: Sendable, Hashable {
    /// Where period 0 starts (for a trial, the trial's end: SPEC §2 "Trial").
    public let anchor: Instant
    public let interval: BillingInterval

    public init(anchor: Instant, interval: BillingInterval) {
        self.anchor = anchor
        self.interval = interval
    }

    /// UTC calendar months: the period of usage no subscription covers (stored and
    /// reported as unbilled, SPEC §2).
    public static let utcMonths = BillingCalendar(anchor: Instant(microsecondsSinceEpoch: 0), interval: .monthly)

    /// The start of period `index` (negative indexes lie before the anchor).
    public func boundary(_ index: Int64) -> Instant {
        let (anchorDate, microOfDay) = anchor.civil
        let monthIndex = Int64(anchorDate.year) * 12 + Int64(anchorDate.month - 1) + index * interval.months
        let year = Int(monthIndex.floorDivided(by: 12))
        let month = Int(monthIndex - Int64(year) * 12 + 1)
        let day = min(anchorDate.day, UTCDay.length(ofMonth: month, in: year))
        let days = UTCDay(year: year, month: month, day: day).daysSinceEpoch!  // clamped, so it exists
        return Instant(microsecondsSinceEpoch: days * Instant.microsecondsPerDay + microOfDay)
    }

    /// Period `index`: `[boundary(index), boundary(index + 1))`.
    public func period(_ index: Int64) -> Period {
        Period(start: boundary(index), end: boundary(index + 1))
    }

    /// The index of the period containing `instant` (negative before the anchor).
    public func index(containing instant: Instant) -> Int64 {
        let (anchorDate, _) = anchor.civil
        let (date, _) = instant.civil
        let monthsApart = Int64((date.year - anchorDate.year) * 12 + (date.month - anchorDate.month))
        var index = monthsApart.floorDivided(by: interval.months)
        // The estimate is off by at most one either way (day of month, time of day).
        while boundary(index) > instant { index -= 1 }
        while boundary(index + 1) <= instant { index += 1 }
        return index
    }

    /// The period containing `instant`.
    public func period(containing instant: Instant) -> Period {
        period(index(containing: instant))
    }
}
