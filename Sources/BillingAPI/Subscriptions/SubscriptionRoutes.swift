import Foundation
import Hummingbird
import Logging
import TallyHTTP
import TallyStore
import UsageEvents

/// `/v1/subscriptions` (SPEC §4): start one, change its plan, cancel it, list a tenant's.
/// Every request takes effect as of its `start`/`at` (default now); a change that
/// would alter an invoiced period is refused with 409 saying which invoice.
///
/// Backdating (SPEC §4): a tenant key acts from now on (`tenantClockSkew` of allowance),
/// so it cannot cancel a period it already used or start one long ago; the admin token
/// may name any instant (a migration from another system, a correction, tests driving
/// periods). Every time accepted anywhere is within years 2000–9999 (`instant`).
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
        let start = try body.start.map { try effectiveTime($0, field: "start", context: context) } ?? clock()
        if let trialDays = body.trialDays, !(0...730).contains(trialDays) { throw APIError.invalid("trial_days", "must be 0 to 730") }
        let created = try await refusals {
            try await store.create(
                tenant: tenant, plan: body.plan, start: start, trialDays: body.trialDays,
                grant: try context.requirePrincipal() == .admin ? .byOperator : .selfService, now: clock())
        }
        context.logger.info("subscription created", metadata: ["tenant.id": "\(tenant)", "subscription.id": "\(created.id)"])
        return EditedResponse(status: .created, response: created)
    }

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> Page<SubscriptionView> {
        let tenant = try context.tenantInScope(request.uri.queryParameters.get("tenant_id"))
        return try PageRequest(request.uri.queryParameters).page(of: try await store.list(tenant: tenant, now: clock()), id: \.id)
    }

    @Sendable func change(_ request: Request, context: TallyRequestContext) async throws -> SubscriptionView {
        let id = try await visibleSubscription(context)
        let body = try await request.decodeJSON(ChangePlanRequest.self, context: context)
        let at = try body.at.map { try effectiveTime($0, field: "at", context: context) } ?? clock()
        let changed = try await refusals { try await store.changePlan(id: id, to: body.plan, at: at, now: clock()) }
        context.logger.info("subscription plan changed", metadata: ["subscription.id": "\(id)", "plan": "\(body.plan)"])
        return changed
    }

    @Sendable func cancel(_ request: Request, context: TallyRequestContext) async throws -> SubscriptionView {
        let id = try await visibleSubscription(context)
        let body = try await request.decodeOptionalJSON(CancelRequest.self, context: context)
        let at = try body?.at.map { try effectiveTime($0, field: "at", context: context) } ?? clock()
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
            case .notFound: throw APIError.notFound(refusal.field == "tenant_id" ? "tenant" : "subscription", field: refusal.field)
            case .conflict: throw APIError(.conflict, code: "CONFLICT", message: refusal.message, field: refusal.field)
            case .forbidden: throw APIError(.forbidden, code: "FORBIDDEN", message: refusal.message, field: refusal.field)
            }
        }
    }

    /// How far before now a tenant key's `start`/`at` may be: clock skew, not backdating.
    static let tenantClockSkew: TimeInterval = 300
    /// The earliest and latest time any request may name.
    static let earliest = RFC3339.parse("2000-01-01T00:00:00Z")!
    /// 10000-01-01T00:00:00Z, exactly: every instant written must be before it. (A `Date`
    /// parsed from 9999-12-31T23:59:59.999999Z rounds to it: a double steps by ~30 µs there.)
    static let yearTenThousand = SubscriptionStore.yearTenThousand

    /// An RFC 3339 instant from a request within years 2000–9999, or 400 naming the field.
    static func instant(_ text: String, field: String) throws -> Date {
        guard let date = RFC3339.parse(text) else {
            throw APIError.invalid(field, "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
        }
        guard date >= earliest, date < yearTenThousand else {
            throw APIError.invalid(field, "must be between 2000-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
        }
        return date
    }

    /// A time a subscription change takes effect: not before now for a tenant key (beyond
    /// the skew allowance); any accepted instant for the admin.
    private func effectiveTime(_ text: String, field: String, context: TallyRequestContext) throws -> Date {
        let date = try Self.instant(text, field: field)
        let now = clock()
        switch try context.requirePrincipal() {
        case .tenant:
            guard date >= now.addingTimeInterval(-Self.tenantClockSkew) else {
                throw APIError(
                    .forbidden, code: "BACKDATING_NOT_ALLOWED",
                    message: "A tenant key acts from now on: `\(field)` may be at most 5 minutes in the past; "
                        + "ask the operator (admin token) to backdate.", field: field)
            }
        case .admin:
            break
        }
        return date
    }
}

struct CreateSubscriptionRequest: ClosedRequestBody {
    let tenantID: String?
    let plan: String
    let start: String?
    let trialDays: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case plan, start
        case tenantID = "tenant_id"
        case trialDays = "trial_days"
    }
}

struct ChangePlanRequest: ClosedRequestBody {
    let plan: String
    let at: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case plan, at
    }
}

struct CancelRequest: ClosedRequestBody {
    let at: String?
    let atPeriodEnd: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case at
        case atPeriodEnd = "at_period_end"
    }
}

extension SubscriptionView: ResponseEncodable {}
