/// What happens when usage reaches a metric's quota (SPEC §2 "Plans").
public enum Enforcement: String, Sendable, Hashable, CaseIterable {
    /// Allowed and billed as overage (the default).
    case soft
    /// Refused at the quota: HTTP 429 `QUOTA_EXCEEDED`.
    case hard
}

/// A plan's terms for one metric: quota, overage price and enforcement.
public struct MetricTerms: Sendable, Hashable {
    /// SPEC §2 seeds "unlimited" as a quota of 999999 (shown as Unlimited).
    public static let unlimitedQuota = Quantity(units: 999_999)

    /// Included usage per period; `nil` means the metric has no quota.
    public let quota: Quantity?
    /// Cents per unit above the quota; zero means overage is free.
    public let overageRate: UnitPrice
    public let enforcement: Enforcement

    public init(quota: Quantity?, overageRate: UnitPrice = .zero, enforcement: Enforcement = .soft) {
        self.quota = quota
        self.overageRate = overageRate
        self.enforcement = enforcement
    }

    /// Whether the quota is the "Unlimited" sentinel (or there is none).
    public var isUnlimited: Bool { quota.map { $0 >= Self.unlimitedQuota } ?? true }

    /// What a period value of `value` costs beyond the base fee (SPEC §2 step 2):
    /// ceil(max(0, value − quota) × rate), zero without a quota or a rate.
    public func overageCharge(for value: Quantity) throws(BillingError) -> OverageCharge? {
        guard let overage = overage(of: value), let quota else { return nil }
        return OverageCharge(
            value: value, quota: quota, overage: overage, rate: overageRate,
            amount: try overageRate.overageCharge(for: overage))
    }

    /// The billable units of a period value: max(0, value − quota); nil without a
    /// quota or a rate (nothing is billed).
    public func overage(of value: Quantity) -> Quantity? {
        guard let quota, overageRate > .zero else { return nil }
        return value.excess(over: quota)
    }
}

/// The overage of one metric for one period, with the figures that produced it.
public struct OverageCharge: Sendable, Hashable {
    public let value: Quantity
    public let quota: Quantity
    public let overage: Quantity
    public let rate: UnitPrice
    public let amount: Cents
}

/// A subscription plan: base fee per period and per-metric terms (SPEC §2 "Plans").
public struct Plan: Sendable, Hashable, Identifiable {
    public let slug: String
    public let name: String
    /// The fee for a whole period, before proration.
    public let baseFee: Cents
    public let interval: BillingInterval
    /// Terms by metric name; a metric missing here has no quota and no overage.
    public let terms: [String: MetricTerms]

    public var id: String { slug }

    public init(slug: String, name: String, baseFee: Cents, interval: BillingInterval = .monthly, terms: [String: MetricTerms]) {
        self.slug = slug
        self.name = name
        self.baseFee = baseFee
        self.interval = interval
        self.terms = terms
    }

    /// Whether moving from `self` to `other` is an upgrade: a higher base fee takes
    /// effect at once; anything else waits for the next period (SPEC §2 "Plan changes").
    public func isUpgrade(to other: Plan) -> Bool { other.baseFee > baseFee }

    /// The overage charges of a period's values, ordered by metric name (SPEC §2 step 2).
    public func overageCharges(for values: [String: Quantity]) throws(BillingError) -> [(metric: String, charge: OverageCharge)] {
        var charges: [(metric: String, charge: OverageCharge)] = []
        for metric in values.keys.sorted() {
            guard let charge = try terms[metric]?.overageCharge(for: values[metric]!) else { continue }
            charges.append((metric, charge))
        }
        return charges
    }

    /// What the metric's value costs under this plan (zero when it has no overage).
    public func charge(metric: String, value: Quantity) throws(BillingError) -> Cents {
        try terms[metric]?.overageCharge(for: value)?.amount ?? .zero
    }
}

extension Plan {
    private static func seeded(_ slug: String, _ name: String, _ base: Int64, quotas: (Int64, Int64, Int64), rates: (Int64, Int64, Int64)) -> Plan {
        Plan(
            slug: slug, name: name, baseFee: Cents(base),
            terms: [
                "estimates": MetricTerms(quota: Quantity(units: quotas.0), overageRate: UnitPrice(cents: rates.0)),
                "api_calls": MetricTerms(quota: Quantity(units: quotas.1), overageRate: UnitPrice(cents: rates.1)),
                "users": MetricTerms(quota: Quantity(units: quotas.2), overageRate: UnitPrice(cents: rates.2)),
            ])
    }

    /// The three plans SPEC §2 seeds, exactly (ops/sql seeds the same rows).
    public static let starter = seeded("starter", "Starter", 29_900, quotas: (50, 1000, 3), rates: (500, 10, 1000))
    public static let professional = seeded("professional", "Professional", 99_900, quotas: (200, 10_000, 10), rates: (400, 8, 800))
    public static let enterprise = seeded("enterprise", "Enterprise", 299_900, quotas: (999_999, 999_999, 999_999), rates: (0, 0, 0))
    public static let seeded: [Plan] = [.starter, .professional, .enterprise]
}
