import BillingEngine
import Foundation
import PostgresClient

/// A plan version as the API shows it and `CatalogStore` writes it.
public struct StoredPlanVersion: Sendable, Codable, Equatable {
    public var code: String
    public var version: Int
    public var name: String
    public var currency: String
    /// `month` or `year`.
    public var interval: String
    public var baseCents: Int64
    public var trialDays: Int
    public var charges: [StoredCharge]
    public var createdAt: Date?
    /// Subscriptions whose plan changes name this version (when read).
    public var subscriptions: Int?

    enum CodingKeys: String, CodingKey {
        case code, version, name, currency, interval, charges, subscriptions
        case baseCents = "base_cents"
        case trialDays = "trial_days"
        case createdAt = "created_at"
    }

    public init(
        code: String, version: Int, name: String, currency: String, interval: String, baseCents: Int64, trialDays: Int,
        charges: [StoredCharge], createdAt: Date? = nil, subscriptions: Int? = nil
    ) {
        self.code = code
        self.version = version
        self.name = name
        self.currency = currency
        self.interval = interval
        self.baseCents = baseCents
        self.trialDays = trialDays
        self.charges = charges.sorted { $0.metric < $1.metric }
        self.createdAt = createdAt
        self.subscriptions = subscriptions
    }

    /// The version without `subscriptions` (for a tenant key).
    public var withoutCount: StoredPlanVersion {
        var version = self
        version.subscriptions = nil
        return version
    }

    /// Whether `other` defines the same prices (its number, time and use aside).
    public func definesSame(as other: StoredPlanVersion) -> Bool {
        code == other.code && name == other.name && currency == other.currency && interval == other.interval
            && baseCents == other.baseCents && trialDays == other.trialDays && charges == other.charges
    }
}

/// A plan code with its versions, oldest first.
public struct StoredPlan: Sendable, Codable, Equatable {
    public let code: String
    public let archivedAt: Date?
    public let versions: [StoredPlanVersion]

    enum CodingKeys: String, CodingKey {
        case code, versions
        case archivedAt = "archived_at"
    }

    /// The plan as a tenant sees it: its prices, not how many subscribe to each version
    /// (the operator's business).
    public var withoutCounts: StoredPlan {
        StoredPlan(code: code, archivedAt: archivedAt, versions: versions.map(\.withoutCount))
    }

    public init(code: String, archivedAt: Date?, versions: [StoredPlanVersion]) {
        self.code = code
        self.archivedAt = archivedAt
        self.versions = versions
    }
}

/// A billable metric as the API shows it (`billable_metrics`).
public struct StoredMetric: Sendable, Codable, Equatable {
    public let code: String
    public let name: String
    public let unit: String?
    /// sum, count, max, latest or unique_count.
    public let aggregation: String
    /// The metadata field `unique_count` counts.
    public let field: String?

    public init(code: String, name: String, unit: String?, aggregation: String, field: String?) {
        self.code = code
        self.name = name
        self.unit = unit
        self.aggregation = aggregation
        self.field = field
    }

    /// A metric the catalog does not define: its usage is recorded and aggregated with
    /// `sum` (SPEC §2), so defining it later under another aggregation is a change too.
    static func undeclared(_ code: String) -> StoredMetric {
        StoredMetric(code: code, name: code, unit: nil, aggregation: "sum", field: nil)
    }
}

/// Why a catalog request was refused, with the field at fault.
public struct CatalogRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalid, notFound, conflict
    }

    public let kind: Kind
    public let field: String
    public let message: String

    public init(_ kind: Kind, field: String, _ message: String) {
        self.kind = kind
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// The pricing catalog in PostgreSQL (SPEC §2.1): billable metrics, plan codes and their
/// immutable versions. A change is always a new version; subscriptions keep theirs.
public struct CatalogStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    // MARK: Metrics

    public func metrics() async throws -> [StoredMetric] {
        try await pool.query("SELECT code, name, unit, aggregation, unique_field FROM billable_metrics ORDER BY code").map(Self.metric)
    }

    public func metric(_ code: String) async throws -> StoredMetric? {
        try await pool.query("SELECT code, name, unit, aggregation, unique_field FROM billable_metrics WHERE code = $1", [code])
            .first.map(Self.metric)
    }

    /// Creates `metric`, or changes its name and unit; its aggregation changes only while no
    /// plan version charges it (409 naming them and the subscriptions on them) and no usage
    /// of it is recorded. Returns the metric and whether it was created.
    public func put(_ metric: StoredMetric) async throws -> (metric: StoredMetric, created: Bool) {
        try await pool.withTransaction { connection in
            let existing = try connection.query(
                "SELECT code, name, unit, aggregation, unique_field FROM billable_metrics WHERE code = $1 FOR UPDATE", [metric.code]
            ).first.map(Self.metric)
            // Undeclared, its usage so far was summed: another aggregation is a change of it.
            try Self.refuseAggregationChange(from: existing ?? .undeclared(metric.code), to: metric, on: connection)
            try connection.query(
                """
                INSERT INTO billable_metrics (code, name, unit, aggregation, unique_field) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit, aggregation = EXCLUDED.aggregation,
                                                 unique_field = EXCLUDED.unique_field
                """, [metric.code, metric.name, metric.unit, metric.aggregation, metric.field])
            return (metric, existing == nil)
        }
    }

    /// Refuses (409) `metric`'s aggregation in place of `existing`'s while a plan version
    /// charges it or usage of it is recorded; nothing when the aggregation is the same.
    public func checkAggregationChange(_ metric: StoredMetric) async throws {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            let existing =
                try connection.query(
                    "SELECT code, name, unit, aggregation, unique_field FROM billable_metrics WHERE code = $1", [metric.code]
                ).first.map(Self.metric) ?? .undeclared(metric.code)
            try Self.refuseAggregationChange(from: existing, to: metric, on: connection)
        }
    }

    private static func refuseAggregationChange(
        from existing: StoredMetric, to metric: StoredMetric, on connection: isolated PostgresConnection
    ) throws {
        guard existing.aggregation != metric.aggregation || existing.field != metric.field else { return }
        let users = try connection.query(
            """
            SELECT v.plan_slug || ' v' || v.version,
                   (SELECT count(DISTINCT c.subscription_id) FROM subscription_plan_changes c
                     WHERE c.plan_slug = v.plan_slug AND c.plan_version = v.version)
              FROM plan_versions v
             WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(v.charges) e WHERE e ->> 'metric' = $1)
             ORDER BY v.plan_slug, v.version
            """, [metric.code])
        if !users.isEmpty {
            let plans = users.map { $0.text(0) ?? "" }
            let subscriptions = try users.reduce(0) { $0 + (try $1.decode(1, as: Int.self)) }
            throw CatalogRefusal(
                .conflict, field: "aggregation",
                "cannot change while \(plans.joined(separator: ", ")) charge \(metric.code) (\(subscriptions) subscription(s) on them); "
                    + "create a new metric instead")
        }
        // Period totals and unique values were kept for the aggregation in force: a
        // period already counted cannot be read again under another.
        let counted = try connection.query("SELECT EXISTS (SELECT 1 FROM usage_rollups WHERE metric = $1)", [metric.code])[0]
        if try counted.decode(0, as: Bool.self) {
            throw CatalogRefusal(
                .conflict, field: "aggregation",
                "cannot change: usage of \(metric.code) is recorded under \(existing.aggregation); create a new metric instead")
        }
    }

    private static func metric(_ row: PostgresRow) throws -> StoredMetric {
        StoredMetric(
            code: try row.decode(0), name: try row.decode(1), unit: try row.decode(2, as: String?.self), aggregation: try row.decode(3),
            field: try row.decode(4, as: String?.self))
    }

    /// The codes of every billable metric.
    public func metricCodes() async throws -> Set<String> {
        Set(try await pool.query("SELECT code FROM billable_metrics").map { try $0.decode(0, as: String.self) })
    }

    // MARK: Plans

    /// Every plan with its versions, by code.
    public func plans() async throws -> [StoredPlan] {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in try Self.plans(code: nil, on: connection) }
    }

    public func plan(_ code: String) async throws -> StoredPlan? {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in try Self.plans(code: code, on: connection).first }
    }

    /// Stores `definition` as version 1 of a new code; 409 when the code exists.
    public func create(_ definition: StoredPlanVersion) async throws -> StoredPlanVersion {
        try await pool.withTransaction { connection in
            let created = try connection.query(
                "INSERT INTO subscription_plans (slug) VALUES ($1) ON CONFLICT (slug) DO NOTHING RETURNING slug", [definition.code])
            guard !created.isEmpty else {
                throw CatalogRefusal(
                    .conflict, field: "code", "plan \(definition.code) exists; add a version with POST /v1/plans/\(definition.code)/versions")
            }
            return try Self.insert(definition, version: 1, on: connection)
        }
    }

    /// Stores `definition` as the next version of its code; 404 when there is no such code,
    /// 409 when it is archived.
    public func addVersion(_ definition: StoredPlanVersion) async throws -> StoredPlanVersion {
        try await pool.withTransaction { connection in
            let plan = try connection.query(
                "SELECT archived_at IS NOT NULL FROM subscription_plans WHERE slug = $1 FOR UPDATE", [definition.code]
            ).first
            guard let plan else { throw CatalogRefusal(.notFound, field: "code", "no plan \(definition.code)") }
            guard try !plan.decode(0, as: Bool.self) else {
                throw CatalogRefusal(.conflict, field: "code", "plan \(definition.code) is archived; create a plan with a new code")
            }
            let next = try connection.query("SELECT max(version) + 1 FROM plan_versions WHERE plan_slug = $1", [definition.code])[0]
                .decode(0, as: Int?.self)
            return try Self.insert(definition, version: next ?? 1, on: connection)
        }
    }

    /// Closes the plan to new subscriptions (those on it keep it); nil when there is no such code.
    public func archive(_ code: String, at: Date) async throws -> StoredPlan? {
        try await pool.withTransaction { connection in
            let updated = try connection.query(
                "UPDATE subscription_plans SET archived_at = coalesce(archived_at, $2) WHERE slug = $1 RETURNING slug", [code, at])
            guard !updated.isEmpty else { return nil }
            return try Self.plans(code: code, on: connection).first
        }
    }

    /// `PlanMigrations.migrate` in a transaction of its own.
    public func migrate(code: String, from: Int, to: Int, tenant: UUID?, at: Date, dryRun: Bool) async throws -> PlanMigrations.Outcome {
        try await pool.withTransaction { connection in
            try PlanMigrations.migrate(code: code, from: from, to: to, tenant: tenant, at: at, dryRun: dryRun, on: connection)
        }
    }

    private static func insert(_ definition: StoredPlanVersion, version: Int, on connection: isolated PostgresConnection) throws
        -> StoredPlanVersion
    {
        let row = try connection.query(
            """
            INSERT INTO plan_versions (plan_slug, version, name, currency, billing_interval, base_cents, trial_days, charges)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
            RETURNING created_at
            """,
            [
                definition.code, version, definition.name, definition.currency, definition.interval, definition.baseCents,
                definition.trialDays, StoredCharge.encode(definition.charges),
            ])[0]
        var stored = definition
        stored.version = version
        stored.createdAt = try row.decode(0, as: Date.self)
        stored.subscriptions = 0
        return stored
    }

    private static func plans(code: String?, on connection: isolated PostgresConnection) throws -> [StoredPlan] {
        let rows = try connection.query(
            """
            SELECT p.slug, p.archived_at, v.version, v.name, v.currency, v.billing_interval, v.base_cents, v.trial_days, v.charges::text,
                   v.created_at,
                   (SELECT count(DISTINCT c.subscription_id) FROM subscription_plan_changes c
                     WHERE c.plan_slug = v.plan_slug AND c.plan_version = v.version)
              FROM subscription_plans p JOIN plan_versions v ON v.plan_slug = p.slug
             WHERE $1::text IS NULL OR p.slug = $1
             ORDER BY p.slug, v.version
            """, [code])
        var plans: [StoredPlan] = []
        for row in rows {
            let slug = try row.decode(0, as: String.self)
            let version = StoredPlanVersion(
                code: slug, version: try row.decode(2), name: try row.decode(3), currency: try row.decode(4), interval: try row.decode(5),
                baseCents: try row.decode(6), trialDays: try row.decode(7), charges: try StoredCharge.decode(try row.decode(8, as: String.self)),
                createdAt: try row.decode(9, as: Date.self), subscriptions: try row.decode(10, as: Int.self))
            if let last = plans.last, last.code == slug {
                plans[plans.count - 1] = StoredPlan(code: slug, archivedAt: last.archivedAt, versions: last.versions + [version])
            } else {
                plans.append(StoredPlan(code: slug, archivedAt: try row.decode(1, as: Date?.self), versions: [version]))
            }
        }
        return plans
    }
}
