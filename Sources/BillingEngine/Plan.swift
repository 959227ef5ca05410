/// What happens when usage reaches a metric's quota (SPEC §2 "Plans").
public enum Enforcement: String, Sendable, Hashable, CaseIterable {
    /// Allowed and billed as overage (the default).
    case soft
    /// Refused at the quota: HTTP 429 `QUOTA_EXCEEDED`.
    case hard
}

/// A plan's terms for one metric: its quota and enforcement, and how its usage is
/// priced (SPEC §2.1: "per metric one charge with `enforcement` and `quota` … and one
/// model").
public struct MetricTerms: Sendable, Hashable {
    /// SPEC §2 seeds "unlimited" as a quota of 999999 (shown as Unlimited).
    public static let unlimitedQuota = Quantity(units: 999_999)

    /// The usage the plan allows per period (enforcement, alerts, the dashboard); `nil`
    /// means the metric has no quota.
    public let quota: Quantity?
    public let enforcement: Enforcement
    /// How the period's value is priced; nil bills nothing.
    public let charge: ChargeModel?

    public init(quota: Quantity?, enforcement: Enforcement = .soft, charge: ChargeModel?) {
        self.quota = quota
        self.enforcement = enforcement
        self.charge = charge
    }

    /// SPEC §2's terms: overage above the quota at `overageRate` cents per unit — a
    /// `standard` charge with the quota included; without a quota nothing is billed.
    public init(quota: Quantity?, overageRate: UnitPrice = .zero, enforcement: Enforcement = .soft) {
        self.init(quota: quota, enforcement: enforcement, charge: quota.map { .standard(included: $0, unitPrice: overageRate) })
    }

    /// Whether the quota is the "Unlimited" sentinel, exactly (or there is none). A plan's
    /// own larger quota is a quota: as "at least 999999" a plan allowing 5,000,000 calls
    /// never sent quota.exceeded nor fired a percentage alert.
    public var isUnlimited: Bool { quota.map { $0 == Self.unlimitedQuota } ?? true }

    /// The price per unit of a `standard` charge (zero for the other models, or none).
    public var overageRate: UnitPrice {
        if case .standard(_, let price) = charge { return price }
        return .zero
    }

    /// What a period value of `value` costs beyond the base fee, line by line.
    public func lines(for value: Quantity) throws(BillingError) -> [ChargeLine] {
        try charge?.lines(for: value) ?? []
    }

    /// The billable units of a period value under a `standard` charge: max(0, value −
    /// included); nil for the other models, or without a charge or a rate.
    public func overage(of value: Quantity) -> Quantity? {
        guard case .standard(let included, let price) = charge, price > .zero else { return nil }
        return value.excess(over: included)
    }
}

/// A version of a subscription plan: base fee per period and per-metric terms (SPEC §2
/// "Plans", §2.1: a plan is a code with immutable versions).
public struct Plan: Sendable, Hashable, Identifiable {
    public let slug: String
    /// The catalog version (1 for a plan never changed).
    public let version: Int
    public let name: String
    /// ISO 4217 code, lower case (`usd`); amounts are in its minor unit.
    public let currency: String
    /// The fee for a whole period, before proration.
    public let baseFee: Cents
    public let interval: BillingInterval
    /// The trial a subscription gets when it does not say.
    public let trialDays: Int
    /// Terms by metric name; a metric missing here has no quota and no charge.
    public let terms: [String: MetricTerms]

    public var id: String { "\(slug)@\(version)" }

    public init(
        slug: String, version: Int = 1, name: String, currency: String = "usd", baseFee: Cents, interval: BillingInterval = .monthly,
        trialDays: Int = 0, terms: [String: MetricTerms]
    ) {
        self.slug = slug
        self.version = version
        self.name = name
        self.currency = currency
        self.baseFee = baseFee
        self.interval = interval
        self.trialDays = trialDays
        self.terms = terms
    }

    /// Whether moving from `self` to `other` is an upgrade: a higher base fee takes
    /// effect at once; anything else waits for the next period (SPEC §2 "Plan changes").
    public func isUpgrade(to other: Plan) -> Bool { other.baseFee > baseFee }

    /// The usage charges of a period's values, ordered by metric name (SPEC §2 step 2):
    /// each metric's lines, metrics charging nothing left out.
    public func usageCharges(for values: [String: Quantity]) throws(BillingError) -> [(metric: String, value: Quantity, lines: [ChargeLine])] {
        var charges: [(metric: String, value: Quantity, lines: [ChargeLine])] = []
        for metric in values.keys.sorted() {
            guard let terms = terms[metric], let value = values[metric] else { continue }
            let lines = try terms.lines(for: value)
            if !lines.isEmpty { charges.append((metric, value, lines)) }
        }
        return charges
    }

    /// What the metric's value costs under this plan (zero when it charges nothing).
    public func charge(metric: String, value: Quantity) throws(BillingError) -> Cents {
        try terms[metric]?.charge?.charge(for: value) ?? .zero
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
