/// A usage alert a tenant set on one metric (SPEC §2 "Alerts").
public struct AlertRule: Sendable, Hashable, Identifiable {
    public enum Condition: Sendable, Hashable {
        /// Fires when the period's value reaches `value`.
        case threshold(Quantity)
        /// Fires when the period's value reaches `percent` % of the plan's quota; the
        /// percentage is exact (33.99 is not 33), and an "Unlimited" quota never fires.
        case quotaPercentage(Quantity)
        /// Fires when the last complete hour is far above the trailing hourly
        /// baseline; see `AnomalyRule`.
        case anomaly(AnomalyRule)
    }

    public let id: String
    public let metric: String
    public let condition: Condition

    public init(id: String, metric: String, condition: Condition) {
        self.id = id
        self.metric = metric
        self.condition = condition
    }
}

/// The anomaly rule, chosen to be robust to noisy and spiky traffic: the baseline
/// is the median of the trailing hours (one earlier spike does not move it), the
/// spread is the median absolute deviation (MAD). The last hour is anomalous when
///   1. at least `minimumHistory` trailing hours are known (no verdicts from nothing),
///   2. it is at least `minimumUsage` (tiny absolute numbers never page anyone),
///   3. it is at least `factor` × the median, and
///   4. it exceeds the median by more than `deviations` × max(MAD, 1 unit).
/// Defaults: 24 hours of baseline, 6 needed, factor 3, 5 deviations, minimum 10.
public struct AnomalyRule: Sendable, Hashable {
    public var baselineHours = 24
    public var minimumHistory = 6
    public var factor = 3
    public var deviations = 5
    public var minimumUsage = Quantity(units: 10)

    public init() {}

    /// Whether `lastHour` is anomalous against `trailingHours` (oldest first; only the
    /// last `baselineHours` count).
    public func isAnomalous(lastHour: Quantity, trailingHours: [Quantity]) -> Bool {
        let history = Array(trailingHours.suffix(baselineHours))
        guard history.count >= minimumHistory, lastHour >= minimumUsage else { return false }
        let median = Self.median(history)
        let spread = Self.median(history.map { $0 > median ? $0 - median : median - $0 })
        let unit = Quantity(units: 1)
        return lastHour.scaled >= Int128(factor) * median.scaled
            && (lastHour - median).scaled > Int128(deviations) * max(spread, unit).scaled
    }

    /// The median; for an even count, the mean of the two middle values (to a
    /// ten-thousandth, rounded down).
    static func median(_ values: [Quantity]) -> Quantity {
        let sorted = values.sorted()
        let upper = sorted[sorted.count / 2]
        guard sorted.count % 2 == 0 else { return upper }
        return Quantity(scaled: (sorted[sorted.count / 2 - 1].scaled + upper.scaled) / 2)
    }
}

/// What an alert evaluation looks at for one metric in one period.
public struct AlertInput: Sendable, Hashable {
    /// The metric's value over the period so far.
    public let value: Quantity
    /// The quota of the plan in force, if any.
    public let quota: Quantity?
    /// The quota is SPEC §2's "Unlimited" (999999, shown as Unlimited): no percentage of it
    /// is ever reached, as no `quota.exceeded` is sent for it.
    public let quotaIsUnlimited: Bool
    /// The last complete hour's usage and the hours before it (oldest first).
    public let lastHour: Quantity
    public let trailingHours: [Quantity]

    public init(
        value: Quantity, quota: Quantity?, quotaIsUnlimited: Bool = false, lastHour: Quantity = .zero, trailingHours: [Quantity] = []
    ) {
        self.value = value
        self.quota = quota
        self.quotaIsUnlimited = quotaIsUnlimited
        self.lastHour = lastHour
        self.trailingHours = trailingHours
    }
}

/// Decides which alerts newly fire. Each rule fires at most once per billing period
/// (SPEC §2: "at most once per billing period for each threshold it crosses; it
/// re-arms at the next period"): the caller passes the ids already fired in the
/// current period and records the ones returned, keyed by (rule, period start).
public enum AlertEvaluator {
    public static func newlyFiring(rules: [AlertRule], input: AlertInput, firedThisPeriod: Set<String>) -> [AlertRule] {
        rules.filter { rule in
            !firedThisPeriod.contains(rule.id) && isCrossed(rule.condition, input)
        }
    }

    static func isCrossed(_ condition: AlertRule.Condition, _ input: AlertInput) -> Bool {
        switch condition {
        case .threshold(let value):
            return input.value >= value
        case .quotaPercentage(let percent):
            // value ≥ percent % of quota, in integers of ten-thousandths:
            // value × 100 × 10⁴ ≥ quota × percent (each scaled by 10⁴).
            guard let quota = input.quota, quota > .zero, !input.quotaIsUnlimited else { return false }
            // A total may be near the database's bound (1e34): compare without overflow.
            let (scaledValue, valueOverflow) = input.value.scaled.multipliedReportingOverflow(by: 1_000_000)
            let (scaledQuota, quotaOverflow) = quota.scaled.multipliedReportingOverflow(by: percent.scaled)
            if valueOverflow || quotaOverflow {
                return Double(input.value.scaled) * 1_000_000 >= Double(quota.scaled) * Double(percent.scaled)
            }
            return scaledValue >= scaledQuota
        case .anomaly(let rule):
            return rule.isAnomalous(lastHour: input.lastHour, trailingHours: input.trailingHours)
        }
    }
}
