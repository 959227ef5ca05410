import CivilTime
import Foundation

/// "Now" for a test that derives its dates from the current date: Tally's clock, so
/// that under `./ops/local.sh test-dates` (which shifts it with `TALLY_CLOCK_OFFSET` for
/// the workers and the tests alike) the test and the processes it drives agree on the
/// day. Use it wherever a date is derived from now, never `Date()`.
public enum TestClock {
    public static func now() -> Date { TallyClock.now() }

    /// `seconds` before `now`, but never before the start of `now`'s UTC calendar month —
    /// the period of a tenant without a subscription. Times a test wants in one such period
    /// stay in it even when the test runs in a month's first minutes (a run at 00:03 on
    /// the 1st put events "within the last 5 minutes" in two months).
    public static func recent(_ seconds: Double, before now: Date) -> Date {
        let day = Int64((now.timeIntervalSince1970 / 86_400).rounded(.down))
        let date = CivilDate(daysSinceEpoch: day)
        let monthStart = Date(timeIntervalSince1970: Double(CivilDate(year: date.year, month: date.month, day: 1).daysSinceEpoch) * 86_400)
        return max(monthStart, now.addingTimeInterval(-seconds))
    }
}
