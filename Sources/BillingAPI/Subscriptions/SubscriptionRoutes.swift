import Foundation
import Hummingbird
import Logging
import TallyHTTP
import TallyStore
import UsageEvents

/// `/v1/subscriptions` (SPEC §4): start one, change its plan, cancel it, list a tenant's.
/// Every request takes effect as of its `at` (default now), any instant; a change that
/// would alter an invoiced period is refused with 409 saying which invoice.
struct SubscriptionRoutes {
    let store: SubscriptionStore
    let clock: @Sendable () -> Date

    func register(on router: Router<TallyRequestContext>) {
        let subscriptions = router.group("v1/subscriptions")
        subscriptions.post(use: create)
        subscriptions.get(use: list)
        subscriptions.post(":subscriptionID/change", use: change)
        subscriptions.post(":subscriptionID/cancel", use: cancel)
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<SubscriptionView> {
        let body = try await request.decodeJSON(CreateSubscriptionRequest.self, context: context)
        let tenant = try context.tenantInScope(body.tenantID)
        let start = try body.start.map { try Self.instant($0, field: "start") } ?? clock()
        let trialDays = body.trialDays ?? 0
        guard (0...730).contains(trialDays) else { throw APIError.invalid("trial_days", "must be 0 to 730") }
        let created = try await refusals { try await store.create(tenant: tenant, plan: body.plan, start: start, trialDays: trialDays, now: clock()) }
        context.logger.info("subscription created", metadata: ["tenant.id": "\(tenant)", "subscription.id": "\(created.id)"])
        return EditedResponse(status: .created, response: created)
    }

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> SubscriptionList {
        let tenant = try context.tenantInScope(request.uri.queryParameters.get("tenant_id"))
        return SubscriptionList(data: try await store.list(tenant: tenant, now: clock()))
    }

    @Sendable func change(_ request: Request, context: TallyRequestContext) async throws -> SubscriptionView {
        let id = try await visibleSubscription(context)
        let body = try await request.decodeJSON(ChangePlanRequest.self, context: context)
        let at = try body.at.map { try Self.instant($0, field: "at") } ?? clock()
        let changed = try await refusals { try await store.changePlan(id: id, to: body.plan, at: at, now: clock()) }
        context.logger.info("subscription plan changed", metadata: ["subscription.id": "\(id)", "plan": "\(body.plan)"])
        return changed
    }

    @Sendable func cancel(_ request: Request, context: TallyRequestContext) async throws -> SubscriptionView {
        let id = try await visibleSubscription(context)
        let body = try await request.decodeOptionalJSON(CancelRequest.self, context: context)
        let at = try body?.at.map { try Self.instant($0, field: "at") } ?? clock()
        let canceled = try await refusals {
            try await store.cancel(id: id, at: at, atPeriodEnd: body?.atPeriodEnd ?? false, now: clock())
        }
        context.logger.info("subscription canceled", metadata: ["subscription.id": "\(id)"])
        return canceled
    }

    private func visibleSubscription(_ context: TallyRequestContext) async throws -> UUID {
        let principal = try context.requirePrincipal()
        guard let id = UUID(uuidString: context.parameters.get("subscriptionID") ?? ""),
            let tenant = try await store.tenant(of: id), principal.canAccess(tenant: tenant)
        else { throw APIError.notFound("subscription") }
        return id
    }

    private func refusals<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let refusal as SubscriptionRefusal {
            switch refusal.kind {
            case .invalid: throw APIError.invalid(refusal.field, refusal.message)
            case .notFound: throw APIError.notFound("subscription")
            case .conflict: throw APIError(.conflict, code: "CONFLICT", message: refusal.message, field: refusal.field)
            }
        }
    }

    /// An RFC 3339 instant from a request, or 400 naming the field.
    static func instant(_ text: String, field: String) throws -> Date {
        guard let date = RFC3339.parse(text) else {
            throw APIError.invalid(field, "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
        }
        return date
    }
}

struct CreateSubscriptionRequest: Decodable {
    let tenantID: String?
    let plan: String
    let start: String?
    let trialDays: Int?

    enum CodingKeys: String, CodingKey {
        case plan, start
        case tenantID = "tenant_id"
        case trialDays = "trial_days"
    }
}

struct ChangePlanRequest: Decodable {
    let plan: String
    let at: String?
}

struct CancelRequest: Decodable {
    let at: String?
    let atPeriodEnd: Bool?

    enum CodingKeys: String, CodingKey {
        case at
        case atPeriodEnd = "at_period_end"
    }
}

struct SubscriptionList: ResponseEncodable {
    let data: [SubscriptionView]
}

extension SubscriptionView: ResponseEncodable {}
