import Catalog
import CivilTime
import Foundation
import Hummingbird
import Logging
import TallyHTTP
import TallyStore
import UsageEvents

/// The pricing catalog (SPEC §2.1): `/v1/metrics` and `/v1/plans`. Anyone with a key reads
/// it (a tenant sees what it could be charged); only the admin token writes. A plan is
/// never edited: a change is a new version, and subscriptions stay on theirs.
struct CatalogRoutes {
    let store: CatalogStore

    func register(on router: Router<TallyRequestContext>) {
        let metrics = router.group("v1/metrics")
        metrics.post(use: putMetric)
        metrics.get(use: listMetrics)
        metrics.get(":metric_code", use: showMetric)
        let plans = router.group("v1/plans")
        plans.post(use: createPlan)
        plans.get(use: listPlans)
        plans.get(":plan_code", use: showPlan)
        plans.post(":plan_code/versions", use: addVersion)
        plans.get(":plan_code/versions/:version", use: showVersion)
        plans.post(":plan_code/archive", use: archive)
        plans.post(":plan_code/migrations", use: migrate)
    }

    // MARK: Metrics

    /// Creates a metric (201) or changes its name and unit (200); its aggregation only
    /// while no plan charges it (409 naming them).
    @Sendable func putMetric(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<StoredMetric> {
        try context.requireAdmin()
        let json = try await Self.json(request, context)
        let definition = try checking { () throws(CatalogRefusal) in try MetricDefinition(json: json) }
        let (metric, created) = try await refusals { try await store.put(definition.metric) }
        context.logger.info(created ? "metric created" : "metric changed", metadata: ["metric": "\(metric.code)"])
        return EditedResponse(status: created ? .created : .ok, response: metric)
    }

    @Sendable func listMetrics(_ request: Request, context: TallyRequestContext) async throws -> Page<StoredMetric> {
        _ = try context.requirePrincipal()
        // A catalog is a few dozen entries: one page, whole.
        return Page(data: try await store.metrics(), hasMore: false)
    }

    @Sendable func showMetric(_ request: Request, context: TallyRequestContext) async throws -> StoredMetric {
        _ = try context.requirePrincipal()
        guard let metric = try await store.metric(context.parameters.get("metric_code") ?? "") else {
            throw APIError.notFound("metric", field: "code")
        }
        return metric
    }

    // MARK: Plans

    /// A new plan code, as its version 1.
    @Sendable func createPlan(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<StoredPlanVersion> {
        try context.requireAdmin()
        let definition = try await checked(try Self.json(request, context), code: nil)
        let created = try await refusals { try await store.create(definition.version) }
        context.logger.info("plan created", metadata: ["plan": "\(created.code)", "plan.version": "\(created.version)"])
        return EditedResponse(status: .created, response: created)
    }

    /// The next version of a plan: new subscriptions take it; existing ones keep theirs
    /// until migrated.
    @Sendable func addVersion(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<StoredPlanVersion> {
        try context.requireAdmin()
        let code = context.parameters.get("plan_code") ?? ""
        let definition = try await checked(try Self.json(request, context), code: code)
        let created = try await refusals { try await store.addVersion(definition.version) }
        context.logger.info("plan version created", metadata: ["plan": "\(created.code)", "plan.version": "\(created.version)"])
        return EditedResponse(status: .created, response: created)
    }

    // A tenant key reads every plan's prices; how many subscribe to each is the admin's to see.

    @Sendable func listPlans(_ request: Request, context: TallyRequestContext) async throws -> Page<StoredPlan> {
        let plans = try await store.plans()
        return Page(data: try context.requirePrincipal() == .admin ? plans : plans.map(\.withoutCounts), hasMore: false)
    }

    @Sendable func showPlan(_ request: Request, context: TallyRequestContext) async throws -> StoredPlan {
        let principal = try context.requirePrincipal()
        guard let plan = try await store.plan(context.parameters.get("plan_code") ?? "") else { throw APIError.notFound("plan", field: "code") }
        return principal == .admin ? plan : plan.withoutCounts
    }

    @Sendable func showVersion(_ request: Request, context: TallyRequestContext) async throws -> StoredPlanVersion {
        let principal = try context.requirePrincipal()
        guard let plan = try await store.plan(context.parameters.get("plan_code") ?? ""),
            let number = Int(context.parameters.get("version") ?? ""),
            let version = plan.versions.first(where: { $0.version == number })
        else { throw APIError.notFound("plan version", field: "version") }
        return principal == .admin ? version : version.withoutCount
    }

    /// Closes a plan to new subscriptions; those on it keep it.
    @Sendable func archive(_ request: Request, context: TallyRequestContext) async throws -> StoredPlan {
        try context.requireAdmin()
        guard let plan = try await store.archive(context.parameters.get("plan_code") ?? "", at: TallyClock.now()) else {
            throw APIError.notFound("plan", field: "code")
        }
        context.logger.info("plan archived", metadata: ["plan": "\(plan.code)"])
        return plan
    }

    /// Moves subscriptions from one version to another from their next period start; a dry
    /// run lists what would move and the price difference at the usage counted so far.
    @Sendable func migrate(_ request: Request, context: TallyRequestContext) async throws -> PlanMigrations.Outcome {
        try context.requireAdmin()
        let body = try await request.decodeJSON(MigrationRequest.self, context: context)
        let tenant = try body.tenantID.map { text -> UUID in
            guard let id = UUID(uuidString: text) else { throw APIError.invalid("tenant_id", "must be a tenant id (UUID)") }
            return id
        }
        // Within years 2000–9999 as every time a request names (a migration at 9999-12-20
        // stored a plan change at 10000-01-15, which no read of the tenant survived).
        let at = try body.at.map { try SubscriptionRoutes.instant($0, field: "at") } ?? TallyClock.now()
        let code = context.parameters.get("plan_code") ?? ""
        let outcome = try await refusals {
            try await store.migrate(code: code, from: body.fromVersion, to: body.toVersion, tenant: tenant, at: at, dryRun: body.dryRun ?? false)
        }
        if !outcome.dryRun {
            context.logger.info(
                "plan migration scheduled",
                metadata: [
                    "plan": "\(code)", "plan.from": "\(body.fromVersion)", "plan.to": "\(body.toVersion)", "subscriptions": "\(outcome.moved.count)",
                ])
        }
        return outcome
    }

    /// The body read and checked, its metrics against the catalog's.
    private func checked(_ json: JSONValue, code: String?) async throws -> PlanDefinition {
        let definition = try checking { () throws(CatalogRefusal) in try PlanDefinition(json: json, code: code) }
        let known = try await store.metricCodes()
        try checking { () throws(CatalogRefusal) in try definition.requireMetrics(in: known) }
        return definition
    }

    /// The body as JSON, numbers kept as written (400 when it is not JSON).
    private static func json(_ request: Request, _ context: TallyRequestContext) async throws -> JSONValue {
        let buffer = try await request.collectBody(context: context)
        do {
            return try JSONParser.parse(buffer.readableBytesView)
        } catch {
            throw APIError.invalid("body", error.refusal)
        }
    }

    /// A definition checked: its refusal as the API's error.
    private func checking<T>(_ body: () throws(CatalogRefusal) -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw Self.apiError(error)
        }
    }

    private func refusals<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let refusal as CatalogRefusal {
            throw Self.apiError(refusal)
        }
    }

    private static func apiError(_ refusal: CatalogRefusal) -> APIError {
        switch refusal.kind {
        case .invalid: APIError.invalid(refusal.field, refusal.message)
        case .notFound: APIError.notFound("plan", field: "code")
        case .conflict: APIError(.conflict, code: "CONFLICT", message: refusal.message, field: refusal.field)
        }
    }
}

struct MigrationRequest: ClosedRequestBody {
    let fromVersion: Int
    let toVersion: Int
    let tenantID: String?
    let at: String?
    let dryRun: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case at
        case fromVersion = "from_version"
        case toVersion = "to_version"
        case tenantID = "tenant_id"
        case dryRun = "dry_run"
    }
}

extension PlanMigrations.Outcome: ResponseEncodable {}
extension StoredMetric: ResponseEncodable {}
extension StoredPlan: ResponseEncodable {}
extension StoredPlanVersion: ResponseEncodable {}
