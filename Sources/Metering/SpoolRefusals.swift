import DiskSpool

/// How the publisher treats a spooled batch the broker refuses (returns it, nacks it,
/// or closes the channel over it): it is retried alone after a capped exponential
/// delay, and after `maxAttempts` it is set aside in the spool's dead-letter file, so
/// the batches behind it drain instead of waiting until the spool fills.
///
/// A broker that cannot be reached, or confirms that time out, count no attempt: only
/// the broker's explicit refusal of a message does.
public struct RefusalPolicy: Sendable, Equatable {
    /// Attempts (the first publish included) before a refused batch is set aside: with the
    /// delays below, about 4 minutes of refusals — long enough to outlast a broker being
    /// reconfigured or restarted, short enough that the spool keeps draining.
    public var maxAttempts = 12
    /// The wait before the second attempt; doubled for each further one, up to `maxDelay`.
    public var initialDelay: Duration = .milliseconds(200)
    public var maxDelay: Duration = .seconds(60)

    public init(maxAttempts: Int = 12, initialDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(60)) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
    }

    /// The wait after the `attempts`-th refusal: initial × 2^(attempts − 1), capped.
    func delay(afterAttempts attempts: Int) -> Duration {
        var delay = initialDelay
        for _ in 1..<max(1, attempts) {
            delay *= 2
            if delay >= maxDelay { return maxDelay }
        }
        return min(delay, maxDelay)
    }
}

/// The drain's memory of refusals: which spooled record the broker refused and how
/// often, and whether records are being published one at a time to find out which one
/// it refuses. Decides; performs no I/O (tested without a broker).
struct SpoolRefusals {
    /// What to do with a record the broker just refused.
    enum Decision: Equatable {
        /// Leave it at the head of the spool and publish it again, alone, after the delay.
        case retry(after: Duration, attempt: Int)
        /// Copy it to the dead-letter file and acknowledge it.
        case setAside(attempts: Int)
    }

    let policy: RefusalPolicy
    private(set) var suspect: SpoolPosition?
    private(set) var attempts = 0
    /// Set when the broker refused a multi-record publish as a whole (a channel error):
    /// records up to here are published one at a time, so a refusal names its record.
    private(set) var isolatingThrough: SpoolPosition?

    init(policy: RefusalPolicy) {
        self.policy = policy
    }

    /// Whether the next drain publishes one record only.
    var publishesAlone: Bool { suspect != nil || isolatingThrough != nil }

    /// The broker refused the record ending at `position` (published alone, or by its own
    /// return or nack).
    mutating func refused(_ position: SpoolPosition) -> Decision {
        if suspect != position {
            suspect = position
            attempts = 0
        }
        attempts += 1
        guard attempts < policy.maxAttempts else {
            let made = attempts
            suspect = nil
            attempts = 0
            return .setAside(attempts: made)
        }
        return .retry(after: policy.delay(afterAttempts: attempts), attempt: attempts)
    }

    /// The broker refused a publish of several records without saying which one.
    mutating func refusedTogether(through last: SpoolPosition) {
        isolatingThrough = max(isolatingThrough ?? last, last)
    }

    /// Every record up to and including `position` is settled (confirmed or set aside).
    mutating func settled(through position: SpoolPosition) {
        if let suspect, suspect <= position {
            self.suspect = nil
            attempts = 0
        }
        if let isolatingThrough, isolatingThrough <= position {
            self.isolatingThrough = nil
        }
    }
}
