import Foundation
import Synchronization

/// Webhook endpoints that hung on their last delivery, not tried again for a while.
///
/// The per-event budget bounds one event's wait on a tenant's hanging endpoints, but a
/// tenant that fires many events (a hundred alerts crossing at once) repeated it for each:
/// another tenant's invoice email waited behind every one of them (a helper measured
/// 57 s behind 24 alerts and 16 endpoints that never answer). An endpoint whose delivery
/// got no answer after hanging (`hangsAfter`, half the webhook timeout) is left untried
/// for `period`: its events fail that attempt at once and go through the retry queues,
/// with their backoff, like any failed delivery. An endpoint that answered, whatever its
/// status and however slowly (a busy machine made a 503 take 5 s), did not hang. A
/// delivery that succeeds ends it early. Kept per Notifier process: another process
/// learns it from its own first hang.
final class EndpointCooling: Sendable {
    static let period = Duration.seconds(60)
    static let hangsAfter = NotificationHandler.webhookTimeout / 2

    private let until = Mutex<[UUID: ContinuousClock.Instant]>([:])

    /// Until when `endpoint` is left untried, or nil when it may be tried now.
    func cooling(_ endpoint: UUID, now: ContinuousClock.Instant = .now) -> ContinuousClock.Instant? {
        until.withLock { until in
            guard let end = until[endpoint] else { return nil }
            guard end > now else {
                until[endpoint] = nil
                return nil
            }
            return end
        }
    }

    /// Records a delivery to `endpoint` that took `elapsed`: whether it succeeded, and
    /// whether the endpoint answered at all (an HTTP status, even an error one). Says
    /// whether the endpoint starts cooling.
    @discardableResult
    func record(_ endpoint: UUID, succeeded: Bool, answered: Bool, elapsed: Duration, now: ContinuousClock.Instant = .now) -> Bool {
        until.withLock { until in
            guard !succeeded, !answered, elapsed >= Self.hangsAfter else {
                if succeeded { until[endpoint] = nil }
                return false
            }
            until[endpoint] = now + Self.period
            return true
        }
    }
}
