import Foundation

/// The instant Tally acts at: what "now" means for every decision that depends on the
/// calendar — the current billing period, the times an event may carry, a billing
/// run's default as-of, an invoice's issue date, the usage partitions kept ready.
///
/// It is the system clock, shifted by `TALLY_CLOCK_OFFSET` seconds when that is set: a
/// clock for a whole deployment, in the spirit of Stripe's test clocks. The date checks
/// of CI (`./ops/local.sh test-dates`) start the workers and the tests with one offset
/// so that all of them live on, say, the 29th of February. Unset in production.
///
/// Durations (timeouts, retries, latency) use `ContinuousClock`, and wire timestamps
/// other parties check (webhook signatures, email dates) the system clock: neither is
/// a billing decision.
public enum TallyClock {
    /// Seconds added to the system clock; 0 unless `TALLY_CLOCK_OFFSET` is set.
    public static let offset: TimeInterval = {
        guard let text = ProcessInfo.processInfo.environment["TALLY_CLOCK_OFFSET"], !text.isEmpty else { return 0 }
        // Within ±50 years: 1e30 passed and trapped converting the first timestamp.
        guard let seconds = TimeInterval(text), seconds.isFinite, abs(seconds) <= maximumOffset else {
            // A setting, not a bug: said as every invalid setting is (exit 1), without a backtrace.
            FileHandle.standardError.write(
                Data(
                    ("Error: TALLY_CLOCK_OFFSET=\(text.prefix(40)) is invalid: expected a number of seconds to add to the system clock, "
                        + "within ±\(Int(maximumOffset)) (50 years); unset it to use the system clock\n").utf8))
            exit(1)
        }
        return seconds
    }()

    /// The largest offset accepted, either way: 50 years of seconds.
    public static let maximumOffset: TimeInterval = 50 * 365.25 * 86_400

    /// The current instant, shifted by `offset`.
    public static func now() -> Date { Date(timeIntervalSinceNow: offset) }
}
