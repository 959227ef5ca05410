/// What went wrong with one attempt at a batch of deliveries, as a worker's handler
/// classifies it. The classification decides what happens next (`BatchAttempt`).
public enum WorkFailure: Sendable, Equatable {
    /// A dependency shared by every message (the database, the mail server) is
    /// unreachable: nothing is wrong with the messages, so they keep their attempts
    /// and the worker holds them until it is back.
    case dependencyDown(String)
    /// A deadlock or serialization failure: the same work may go through at once.
    case conflict
    /// This work failed (a constraint, a refusal, a receiver answering 500): another
    /// attempt later may succeed, within the retry policy's attempts.
    case failed(String)
    /// The work can never succeed as it is (unreadable, an unknown type): parked now.
    case poison(String)
    /// The broker connection is gone: nothing can be acked on it; reconnect, and the
    /// broker redelivers what was unacked.
    case brokerGone
}

/// What a worker does next with a batch.
public enum WorkAction: Sendable, Equatable {
    /// Run the same work again after a short pause (a conflict).
    case retryNow(after: Duration)
    /// Keep the batch unacked and try it again after `after` (a dependency is down).
    case hold(after: Duration)
    /// Settle each delivery of the batch on its own, to find the one at fault.
    case split
    /// Publish the delivery to its retry queue (`routingKey` on `tally.retry`) with
    /// attempt number `attempt`, then ack it.
    case retryLater(routingKey: String, attempt: Int)
    /// Publish the delivery to the parking lot with `reason`, then ack it.
    case park(reason: String)
    /// Shutdown came while holding: leave the batch unacked (the broker redelivers it).
    case abandon
    /// Reconnect to the broker; the batch is redelivered.
    case reconnect
}

/// The decisions about one batch, a value type with no I/O (postgres-nio's state
/// machines are the model): a worker feeds it each failure and does what it answers.
///
/// - A dependency outage holds the batch with capped exponential backoff and costs no
///   attempt; shutdown during a hold abandons it unacked.
/// - Conflicts are retried at once, `maxConflicts` times per batch, then count as a failure.
/// - A failure of a batch of several splits it; a failure of one message sends it to its
///   retry queue, or parks it once the retry policy's attempts are used up.
/// - Poison parks a single message at once (in a batch of several it splits first).
/// - A lost broker connection reconnects, whatever else.
public struct BatchAttempt: Sendable, Equatable {
    /// Deliveries in the batch.
    public let size: Int
    /// The delivery's attempt number (`x-tally-attempt`, 1 when absent); read for a batch of one.
    public let attempt: Int
    public let queue: String
    public let retry: RetryPolicy
    public let maxConflicts: Int
    public let firstHold: Duration
    public let maxHold: Duration
    public private(set) var conflicts = 0
    public private(set) var nextHold: Duration

    public init(
        size: Int, attempt: Int, queue: String, retry: RetryPolicy, maxConflicts: Int = 3, firstHold: Duration = .milliseconds(100),
        maxHold: Duration = .seconds(5)
    ) {
        precondition(size > 0)
        self.size = size
        self.attempt = max(1, attempt)
        self.queue = queue
        self.retry = retry
        self.maxConflicts = maxConflicts
        self.firstHold = firstHold
        self.maxHold = maxHold
        self.nextHold = firstHold
    }

    /// What to do after `failure`; `shuttingDown` says graceful shutdown has begun.
    public mutating func next(after failure: WorkFailure, shuttingDown: Bool) -> WorkAction {
        switch failure {
        case .brokerGone:
            return .reconnect
        case .dependencyDown:
            guard !shuttingDown else { return .abandon }
            let wait = nextHold
            nextHold = min(nextHold * 2, maxHold)
            return .hold(after: wait)
        case .conflict where conflicts < maxConflicts:
            conflicts += 1
            return .retryNow(after: .milliseconds(20 * conflicts))
        case .conflict:
            return afterFailedAttempt("deadlock or serialization failure \(conflicts + 1) times in a row")
        case .failed(let reason):
            return afterFailedAttempt(reason)
        case .poison(let reason):
            return size > 1 ? .split : .park(reason: reason)
        }
    }

    private func afterFailedAttempt(_ reason: String) -> WorkAction {
        guard size == 1 else { return .split }
        switch retry.next(afterFailedAttempt: attempt, queue: queue) {
        case .retry(let routingKey, let next): return .retryLater(routingKey: routingKey, attempt: next)
        case .park: return .park(reason: "failed \(attempt) times: \(reason)")
        }
    }
}
