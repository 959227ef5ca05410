import BillingEngine
import Foundation
import PostgresClient

/// Every version of every plan (SPEC §2.1), as the billing engine prices them: what a
/// subscription's plan changes name (`plan(_:version:)`), and each code's newest version,
/// which new subscriptions and plan changes take (`self[slug]`).
public struct PlanCatalog: Sendable {
    public struct Key: Sendable, Hashable {
        public let slug: String
        public let version: Int

        public init(slug: String, version: Int) {
            self.slug = slug
            self.version = version
        }
    }

    public let versions: [Key: Plan]
    /// The newest version of each code.
    public let current: [String: Plan]
    /// Codes archived: kept for the subscriptions on them, closed to new ones.
    public let archived: Set<String>

    public init(_ plans: [Plan], archived: Set<String> = []) {
        var versions: [Key: Plan] = [:]
        var current: [String: Plan] = [:]
        for plan in plans {
            versions[Key(slug: plan.slug, version: plan.version)] = plan
            if current[plan.slug].map({ $0.version < plan.version }) ?? true { current[plan.slug] = plan }
        }
        self.versions = versions
        self.current = current
        self.archived = archived
    }

    /// The newest version of the plan `slug`.
    public subscript(slug: String) -> Plan? { current[slug] }

    /// The version a plan change names.
    public func plan(_ slug: String, version: Int) -> Plan? { versions[Key(slug: slug, version: version)] }

    /// The codes open to new subscriptions, sorted (for error messages).
    public var openSlugs: [String] { current.keys.filter { !archived.contains($0) }.sorted() }
}

/// The plans as stored (`plan_versions`, migration 022), read and written.
public enum PlanCatalogRecords {
    /// Every version of every plan.
    public static func load(on connection: isolated PostgresConnection) throws -> PlanCatalog {
        let rows = try connection.query(
            """
            SELECT v.plan_slug, v.version, v.name, v.currency, v.billing_interval, v.base_cents, v.trial_days, v.charges::text,
                   p.archived_at IS NOT NULL
              FROM plan_versions v JOIN subscription_plans p ON p.slug = v.plan_slug
            """)
        var plans: [Plan] = []
        var archived = Set<String>()
        for row in rows {
            let slug = try row.decode(0, as: String.self)
            let charges = try StoredCharge.decode(try row.decode(7, as: String.self))
            plans.append(
                Plan(
                    slug: slug, version: try row.decode(1, as: Int.self), name: try row.decode(2, as: String.self),
                    currency: try row.decode(3, as: String.self), baseFee: Cents(try row.decode(5, as: Int64.self)),
                    interval: try row.decode(4, as: String.self) == "year" ? .yearly : .monthly, trialDays: try row.decode(6, as: Int.self),
                    terms: try StoredCharge.terms(charges)))
            if try row.decode(8, as: Bool.self) { archived.insert(slug) }
        }
        return PlanCatalog(plans, archived: archived)
    }
}

/// One metric's terms as `plan_versions.charges` stores them (and the API shows them):
/// decimals as strings, amounts in the currency's minor unit.
public struct StoredCharge: Codable, Sendable, Hashable {
    public struct Tier: Codable, Sendable, Hashable {
        public var upTo: String?
        public var unitPrice: String
        public var flatCents: Int64?

        enum CodingKeys: String, CodingKey {
            case upTo = "up_to"
            case unitPrice = "unit_price"
            case flatCents = "flat_cents"
        }

        public init(upTo: String?, unitPrice: String, flatCents: Int64?) {
            self.upTo = upTo
            self.unitPrice = unitPrice
            self.flatCents = flatCents
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(upTo, forKey: .upTo)  // null for the open tier, written
            try container.encode(unitPrice, forKey: .unitPrice)
            try container.encode(flatCents ?? 0, forKey: .flatCents)
        }
    }

    public var metric: String
    public var enforcement: String
    public var quota: String?
    /// standard, graduated, volume or package; nil: the metric is not priced.
    public var model: String?
    public var included: String?
    public var unitPrice: String?
    public var tiers: [Tier]?
    public var size: String?
    public var priceCents: Int64?

    enum CodingKeys: String, CodingKey {
        case metric, enforcement, quota, model, included, tiers, size
        case unitPrice = "unit_price"
        case priceCents = "price_cents"
    }

    public init(
        metric: String, enforcement: String, quota: String?, model: String?, included: String? = nil, unitPrice: String? = nil,
        tiers: [Tier]? = nil, size: String? = nil, priceCents: Int64? = nil
    ) {
        self.metric = metric
        self.enforcement = enforcement
        self.quota = quota
        self.model = model
        self.included = included
        self.unitPrice = unitPrice
        self.tiers = tiers
        self.size = size
        self.priceCents = priceCents
    }

    /// `terms` as stored, in metric order.
    public init(metric: String, terms: MetricTerms) {
        self.init(metric: metric, enforcement: terms.enforcement.rawValue, quota: terms.quota?.description, model: terms.charge?.name)
        switch terms.charge {
        case .standard(let included, let price)?:
            self.included = included.description
            self.unitPrice = price.description
        case .graduated(let tiers)?, .volume(let tiers)?:
            self.tiers = tiers.map { Tier(upTo: $0.upTo?.description, unitPrice: $0.unitPrice.description, flatCents: $0.flat.value) }
        case .package(let included, let size, let price)?:
            self.included = included.description
            self.size = size.description
            self.priceCents = price.value
        case nil:
            break
        }
    }

    /// The stored array of a version's charges.
    static func decode(_ json: String) throws -> [StoredCharge] {
        try JSONDecoder().decode([StoredCharge].self, from: Data(json.utf8))
    }

    /// `charges` as the JSON array stored (sorted by metric).
    public static func encode(_ charges: [StoredCharge]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(charges.sorted { $0.metric < $1.metric })) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The engine's terms of stored charges (already validated when written).
    static func terms(_ charges: [StoredCharge]) throws -> [String: MetricTerms] {
        var terms: [String: MetricTerms] = [:]
        for charge in charges {
            terms[charge.metric] = MetricTerms(
                quota: try charge.quota.map { try Quantity(parsingTotal: $0) }, enforcement: charge.enforcement == "hard" ? .hard : .soft,
                charge: try charge.chargeModel())
        }
        return terms
    }

    /// The engine's model of this charge, nil when it is not priced.
    func chargeModel() throws -> ChargeModel? {
        let quantity = { (text: String?) throws -> Quantity in try Quantity(parsingTotal: text ?? "0") }
        let tiers = {
            try (self.tiers ?? []).map { tier in
                PriceTier(
                    upTo: try tier.upTo.map { try Quantity(parsingTotal: $0) }, unitPrice: try UnitPrice(parsing: tier.unitPrice),
                    flat: Cents(tier.flatCents ?? 0))
            }
        }
        switch model {
        case "standard": return .standard(included: try quantity(included), unitPrice: try UnitPrice(parsing: unitPrice ?? "0"))
        case "graduated": return .graduated(try tiers())
        case "volume": return .volume(try tiers())
        case "package": return .package(included: try quantity(included), size: try quantity(size), price: Cents(priceCents ?? 0))
        default: return nil
        }
    }
}
