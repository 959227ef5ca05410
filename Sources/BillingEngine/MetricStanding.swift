/// Where one metric stands against its plan in a period: the value so far, the quota,
/// how much of it is used and what the usage above it costs so far. The usage page,
/// `GET /v1/usage` and the upcoming invoice all read this one value.
public struct MetricStanding: Sendable, Hashable {
    /// How close the value is to the quota, as the dashboard colors its bar.
    public enum Level: String, Sendable, Hashable, CaseIterable {
        /// Below 50 % of the quota.
        case low
        /// From 50 % up to, not including, 80 %.
        case elevated
        /// 80 % and above.
        case high
    }

    public let metric: String
    public let value: Quantity
    /// The plan's quota; nil when the metric has none (or there is no plan).
    public let quota: Quantity?
    /// No quota, or the "Unlimited" quota of SPEC §2.
    public let isUnlimited: Bool
    /// The plan's enforcement; nil without a plan that names the metric.
    public let enforcement: Enforcement?
    /// What the usage above the quota (and late usage of billed periods) adds to the
    /// open period's invoice so far.
    public let charge: Cents

    public init(metric: String, value: Quantity, terms: MetricTerms?, charge: Cents = .zero) {
        self.metric = metric
        self.value = value
        self.quota = terms?.quota
        self.isUnlimited = terms?.isUnlimited ?? true
        self.enforcement = terms?.enforcement
        self.charge = charge
    }

    /// The whole percent of the quota used (floored: 49.99 % is 49), which may pass 100;
    /// nil when unlimited. A quota of zero is 100 % used by any usage.
    public var percent: Int? {
        guard !isUnlimited, let quota else { return nil }
        guard quota > .zero else { return value > .zero ? 100 : 0 }
        let percent = value.scaled * 100 / quota.scaled
        return percent > Int128(Int.max) ? Int.max : Int(percent)
    }

    /// The band of `percent`; nil when unlimited. The thresholds are whole percents, so
    /// comparing the floored percent is exact.
    public var level: Level? {
        guard let percent else { return nil }
        if percent < 50 { return .low }
        return percent < 80 ? .elevated : .high
    }

    /// The standing of every metric that has usage or terms, ordered by name: `values`
    /// against `plan`'s terms, each with the charge the invoice draft's lines carry for it.
    public static func standings(values: [String: Quantity], plan: Plan?, lines: [InvoiceLine] = []) -> [MetricStanding] {
        var charges: [String: Cents] = [:]
        for line in lines {
            guard let metric = line.metric else { continue }
            charges[metric, default: .zero] += line.amount
        }
        let metrics = Set(values.keys).union(plan.map { Array($0.terms.keys) } ?? [])
        return metrics.sorted().map { metric in
            MetricStanding(
                metric: metric, value: values[metric] ?? .zero, terms: plan?.terms[metric], charge: charges[metric] ?? .zero)
        }
    }
}
