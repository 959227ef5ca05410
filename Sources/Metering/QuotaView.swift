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

    /// Takes in `state`. A state of the period held is merged into it metric by metric:
    /// each metric keeps the position with more events (the newer, whichever broadcast
    /// came last), metrics the state does not name stay as held, and the subscription and
    /// time are the newer state's. A state of another period replaces the one held unless
    /// that one is newer.
    public func apply(_ state: QuotaState) {
        states.withLock { states in
            guard let held = states[state.tenantID] else {
                states[state.tenantID] = state
                return
            }
            states[state.tenantID] = Self.merging(state, into: held)
        }
    }

    /// What a view holds after `state` arrives while it holds `held` (same tenant).
    static func merging(_ state: QuotaState, into held: QuotaState) -> QuotaState {
        let stateIsNewer = state.asOf >= held.asOf
        let newer = stateIsNewer ? state : held
        guard state.periodStart == held.periodStart, state.periodEnd == held.periodEnd else { return newer }
        var metrics = held.metrics
        for (name, position) in state.metrics {
            if let kept = metrics[name], !Self.supersedes(position, kept, newerState: stateIsNewer) { continue }
            metrics[name] = position
        }
        return QuotaState(
            tenantID: held.tenantID, asOf: newer.asOf, periodStart: held.periodStart, periodEnd: held.periodEnd,
            subscription: newer.subscription, metrics: metrics)
    }

    /// Whether `position` replaces `kept`: by their event counts when both have one, else by
    /// which state is newer.
    private static func supersedes(_ position: QuotaState.Metric, _ kept: QuotaState.Metric, newerState: Bool) -> Bool {
        if let events = position.events, let keptEvents = kept.events, events != keptEvents { return events > keptEvents }
        return newerState
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
