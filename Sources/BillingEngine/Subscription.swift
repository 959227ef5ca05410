/// A plan change that takes effect at `effectiveAt` (SPEC §2 "Plan changes").
public struct PlanChange: Sendable, Hashable {
    public let effectiveAt: Instant
    public let plan: Plan

    public init(effectiveAt: Instant, plan: Plan) {
        self.effectiveAt = effectiveAt
        self.plan = plan
    }
}

/// How a subscription ends (SPEC §2 "Plan changes").
public enum Cancellation: Sendable, Hashable {
    /// Requested at this instant; the period containing it is the last, billed in
    /// full (requested during a trial, the subscription ends with the trial).
    case atPeriodEnd(requestedAt: Instant)
    /// The period containing this instant ends there and is billed as a shorter
    /// period: base prorated over the full period's length. Inside a trial, the trial
    /// ends there and no period is ever billed.
    case immediately(at: Instant)
}

/// The part of a billing period one plan was in force: base fee lines are per segment.
public struct PlanSegment: Sendable, Hashable {
    public let plan: Plan
    public let span: Period
}

/// One billing period of a subscription: the calendar period, and the span that is
/// billed (shorter when the subscription was canceled immediately inside it).
public struct BillingPeriod: Sendable, Hashable {
    public let index: Int64
    /// The full calendar period: proration divides by its length.
    public let calendarPeriod: Period
    /// What is billed: the calendar period, cut short by an immediate cancellation.
    public let billed: Period
}

/// A subscription's timeline: its calendar, trial, plan changes and cancellation.
/// Everything about which plan applies when, and which periods exist, is derived
/// here and nowhere else.
public struct Subscription: Sendable, Hashable {
    public let calendar: BillingCalendar
    /// Usage inside the trial is recorded and never billed; the first period starts at its end.
    public let trial: Period?
    public let initialPlan: Plan
    /// Changes in effect order.
    public private(set) var changes: [PlanChange]
    public private(set) var cancellation: Cancellation?

    /// A subscription starting at `start` on `plan`; with `trialEnd`, the trial is
    /// `[start, trialEnd)` and the anchor moves to `trialEnd` (SPEC §2 "Trial").
    public init(plan: Plan, start: Instant, trialEnd: Instant? = nil) {
        precondition(trialEnd.map { $0 > start } ?? true, "a trial ends after it starts")
        self.initialPlan = plan
        self.trial = trialEnd.map { Period(start: start, end: $0) }
        self.calendar = BillingCalendar(anchor: trialEnd ?? start, interval: plan.interval)
        self.changes = []
        self.cancellation = nil
    }

    /// A subscription as stored: its plan changes (effective instants already decided)
    /// and, when canceled, the instant billing stops.
    public init(plan: Plan, start: Instant, trialEnd: Instant?, changes: [PlanChange], endsAt: Instant?) {
        self.init(plan: plan, start: start, trialEnd: trialEnd)
        self.changes = changes.sorted { $0.effectiveAt < $1.effectiveAt }
        self.cancellation = endsAt.map { .immediately(at: $0) }
    }

    /// The plan in force at `instant` (the initial plan before any change).
    public func plan(at instant: Instant) -> Plan {
        changes.last { $0.effectiveAt <= instant }?.plan ?? initialPlan
    }

    /// Changes to `plan` as asked at `requestedAt`: an upgrade at that moment, a
    /// downgrade (or a same-price change) at the next period start. Returns when it
    /// takes effect. A later request replaces changes scheduled after its own moment.
    @discardableResult
    public mutating func changePlan(to plan: Plan, requestedAt: Instant) -> Instant {
        let current = self.plan(at: requestedAt)
        let effective =
            current.isUpgrade(to: plan) || requestedAt < calendar.anchor
            ? max(requestedAt, calendar.anchor)
            : calendar.period(containing: requestedAt).end
        changes.removeAll { $0.effectiveAt >= effective }
        changes.append(PlanChange(effectiveAt: effective, plan: plan))
        return effective
    }

    /// Cancels; see `Cancellation` for when billing stops.
    public mutating func cancel(_ cancellation: Cancellation) {
        self.cancellation = cancellation
    }

    /// When the subscription stops billing, if it is canceled.
    public var endsAt: Instant? {
        switch cancellation {
        case nil: nil
        // Asked during a trial, "at period end" means at the trial's end: nothing is billed.
        case .atPeriodEnd(let requestedAt):
            requestedAt < calendar.anchor ? calendar.anchor : calendar.period(containing: requestedAt).end
        // Inside the trial it ends then, not with the trial: it held the tenant, which
        // could take no other subscription, until the trial's end (and nothing is billed
        // either way). Never before the start.
        case .immediately(let at): max(at, trial?.start ?? calendar.anchor)
        }
    }

    /// The trial as the subscription held it: cut where a cancellation inside it ended the
    /// subscription; nil without a trial, or when it ended before its trial began.
    public var heldTrial: Period? {
        guard let trial else { return nil }
        let end = min(trial.end, endsAt ?? trial.end)
        return end > trial.start ? Period(start: trial.start, end: end) : nil
    }

    /// Billing period `index`, or nil when the subscription has no such period
    /// (before the anchor, or after it ended).
    public func billingPeriod(_ index: Int64) -> BillingPeriod? {
        guard index >= 0 else { return nil }
        let full = calendar.period(index)
        if let endsAt, endsAt <= full.start { return nil }
        let billedEnd = min(full.end, endsAt ?? full.end)
        return BillingPeriod(index: index, calendarPeriod: full, billed: Period(start: full.start, end: billedEnd))
    }

    /// The billing period whose billed span contains `instant`, if any: usage at
    /// instants outside every period (trial, after the end) is never billed.
    public func billingPeriod(containing instant: Instant) -> BillingPeriod? {
        guard let period = billingPeriod(calendar.index(containing: instant)), period.billed.contains(instant) else { return nil }
        return period
    }

    /// The plan segments that tile a billed span, in time order (SPEC §2 step 1).
    public func segments(of period: BillingPeriod) -> [PlanSegment] {
        let span = period.billed
        let cuts = changes.map(\.effectiveAt).filter { span.start < $0 && $0 < span.end }
        let bounds = [span.start] + cuts + [span.end]
        var segments: [PlanSegment] = []
        for (start, end) in zip(bounds, bounds.dropFirst()) where start < end {
            let plan = plan(at: start)
            // Two changes to the same plan inside one period make one segment, not two.
            if let last = segments.last, last.plan == plan {
                segments[segments.count - 1] = PlanSegment(plan: plan, span: Period(start: last.span.start, end: end))
            } else {
                segments.append(PlanSegment(plan: plan, span: Period(start: start, end: end)))
            }
        }
        return segments
    }

    /// The plan whose quotas and rates price the period's usage: the one in force at
    /// the end of the billed span (SPEC §2 step 2; an upgrade applies to the whole period).
    public func pricingPlan(of period: BillingPeriod) -> Plan {
        plan(at: period.billed.end.advanced(byMicroseconds: -1))
    }
}
