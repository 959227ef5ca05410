import Foundation
import Synchronization
import UsageEvents

/// A process-local view of every tenant's quota state, fed by `quota.state`
/// broadcasts, answering quota questions without touching the database.
///
/// When the view holds no state for a tenant, or only state older than
/// `freshness`, it answers `.unknown` and the caller allows and meters the
/// request (failing open: a broker hiccup must not take customers' APIs down).
public final class QuotaView: Sendable {
    /// What to do with a request that would consume `metric`.
    public enum Decision: Sendable, Equatable {
        /// Within quota, soft-enforced, or no quota: serve it.
        case allow
        /// No fresh state: serve it and meter it (logged and counted by the caller).
        case unknown
        /// The hard quota is reached: refuse with 429 QUOTA_EXCEEDED.
        case exceeded(used: Quantity, quota: Quantity)
        /// The tenant has no subscription in force: refuse with 403 NO_SUBSCRIPTION.
        case noSubscription
    }

    private let states = Mutex<[UUID: QuotaState]>([:])
    private let freshness: TimeInterval

    public init(freshness: Duration = .seconds(300)) {
        self.freshness = Double(freshness.components.seconds)
    }

    /// Keeps `state` unless a newer one for the tenant is already held.
    public func apply(_ state: QuotaState) {
        states.withLock { states in
            if let held = states[state.tenantID], held.asOf > state.asOf { return }
            states[state.tenantID] = state
        }
    }

    /// The decision for one request of `tenant` consuming `metric` at `now`.
    public func decision(tenant: UUID, metric: String, now: Date) -> Decision {
        guard let state = states.withLock({ $0[tenant] }), now.timeIntervalSince(state.asOf) <= freshness else {
            return .unknown
        }
        if state.subscription == .none { return .noSubscription }
        guard let position = state.metrics[metric], position.isExhausted, let quota = position.quota else {
            return .allow
        }
        return .exceeded(used: position.used, quota: quota)
    }
}
