import Foundation
import RabbitMQClient

/// How a worker retries a message that failed for a transient reason, and when it
/// gives up and parks it.
///
/// The worker republishes the message (with confirms) to `tally.retry` under the
/// name of the retry queue for its attempt, with `x-tally-attempt` incremented, and
/// only then acks the original; the retry queue's TTL brings it back to the work
/// queue. After `maxAttempts` it publishes to `tally.parking` with
/// `x-tally-park-reason`. RabbitMQ's own `x-delivery-limit` is the backstop for a
/// message that crashes its consumer before it can do either.
public struct RetryPolicy: Sendable, Equatable {
    /// One waiting time before another attempt.
    public struct Delay: Sendable, Equatable {
        public let label: String
        public let milliseconds: Int64

        public init(label: String, milliseconds: Int64) {
            self.label = label
            self.milliseconds = milliseconds
        }
    }

    public let delays: [Delay]
    public let maxAttempts: Int
    public let deliveryLimit: Int

    public init(delays: [Delay], maxAttempts: Int, deliveryLimit: Int) {
        precondition(!delays.isEmpty && maxAttempts > 0)
        self.delays = delays
        self.maxAttempts = maxAttempts
        self.deliveryLimit = deliveryLimit
    }

    /// 5 s, 30 s, then 5 min between attempts; parked after 6 attempts.
    public static let standard = RetryPolicy(
        delays: [
            Delay(label: "5s", milliseconds: 5_000), Delay(label: "30s", milliseconds: 30_000),
            Delay(label: "5m", milliseconds: 300_000),
        ],
        maxAttempts: 6, deliveryLimit: 20)

    /// The Notifier's: 5 s, 30 s, 2 min, 10 min, then hourly; parked after 8 attempts
    /// (about four hours): a webhook receiver or mail server may be down for a while.
    public static let notifications = RetryPolicy(
        delays: [
            Delay(label: "5s", milliseconds: 5_000), Delay(label: "30s", milliseconds: 30_000),
            Delay(label: "2m", milliseconds: 120_000), Delay(label: "10m", milliseconds: 600_000),
            Delay(label: "1h", milliseconds: 3_600_000),
        ],
        maxAttempts: 8, deliveryLimit: 20)

    /// The longest delay a retry queue can hold a message: RabbitMQ's largest TTL.
    public static let longestDelayMilliseconds: Int64 = 4_294_967_295

    /// Delays written as `5s,30s,2m,1h` (units ms, s, m, h; each label names its queue, each
    /// at most about 49 days), or nil when the text is not such a list.
    public static func delays(parsing text: String) -> [Delay]? {
        let labels = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let delays = labels.compactMap { label -> Delay? in
            let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
            guard let (suffix, scale) = units.first(where: { label.hasSuffix($0.0) && Int64(label.dropLast($0.0.count)) != nil }),
                let count = Int64(label.dropLast(suffix.count)), count > 0
            else { return nil }
            // A queue's message TTL is at most 2³² − 1 ms (about 49 days) in RabbitMQ; more
            // overflowed here (a crash) or was refused by the broker when the queue was declared.
            let (milliseconds, overflow) = count.multipliedReportingOverflow(by: scale)
            guard !overflow, milliseconds <= Self.longestDelayMilliseconds else { return nil }
            return Delay(label: label, milliseconds: milliseconds)
        }
        return delays.count == labels.count && !delays.isEmpty ? delays : nil
    }

    public func retryQueue(for queue: String, delay: Delay) -> String { "\(queue).retry.\(delay.label)" }
    public func parkingQueue(for queue: String) -> String { "\(queue).parked" }

    /// What to do after attempt number `attempt` (1-based) of a message from `queue` failed.
    public func next(afterFailedAttempt attempt: Int, queue: String) -> Decision {
        guard attempt < maxAttempts else { return .park(routingKey: queue) }
        let delay = delays[min(attempt - 1, delays.count - 1)]
        return .retry(routingKey: retryQueue(for: queue, delay: delay), attempt: attempt + 1)
    }

    /// Where a failed message goes next.
    public enum Decision: Sendable, Equatable {
        /// Publish to `tally.retry` with this routing key and `x-tally-attempt: attempt`.
        case retry(routingKey: String, attempt: Int)
        /// Publish to `tally.parking` with this routing key and a reason header.
        case park(routingKey: String)
    }
}
