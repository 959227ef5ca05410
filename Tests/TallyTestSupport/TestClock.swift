import CivilTime
import Foundation

/// "Now" for a test that derives its dates from the current date: Tally's clock, so
/// that under `./ops/local.sh test-dates` (which shifts it with `TALLY_CLOCK_OFFSET` for
/// the workers and the tests alike) the test and the processes it drives agree on the
/// day. Use it wherever a date is derived from now, never `Date()`.
public enum TestClock {
    public static func now() -> Date { TallyClock.now() }
}
