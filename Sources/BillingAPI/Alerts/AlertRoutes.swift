import Foundation
import Hummingbird
import Logging
import TallyHTTP
import TallyStore

/// `/v1/alerts`: a tenant's usage alerts (threshold, quota percentage, anomaly) and
/// where they are sent (email, webhook). A tenant key manages only its own alerts;
/// another tenant's alert answers 404. The Aggregator evaluates them as usage lands.
struct AlertRoutes {
    let store: AlertStore

    func register(on router: Router<TallyRequestContext>) {
        let alerts = router.group("v1/alerts")
        alerts.post(use: create)
        alerts.get(use: list)
        alerts.get(":alertID", use: show)
        alerts.delete(":alertID", use: delete)
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<UsageAlert> {
        let body = try await request.decodeJSON(CreateAlertRequest.self, context: context)
        let tenant = try context.tenantInScope(body.tenantID)
        let alert: NewUsageAlert
        do {
            alert = try NewUsageAlert(
                tenantID: tenant, metric: body.metric, kind: body.kind, thresholdValue: body.thresholdValue?.text,
                thresholdPercentage: body.thresholdPercentage?.text, channels: body.channels)
        } catch {
            throw APIError.invalid(error.field, error.message)
        }
        let stored: UsageAlert?
        do {
            stored = try await store.create(alert)
        } catch is UnknownTenant {
            throw APIError.notFound("tenant", field: "tenant_id")
        }
        guard let created = stored else { throw Self.tooMany }
        context.logger.info("alert created", metadata: ["tenant.id": "\(tenant)", "alert.id": "\(created.id)"])
        return EditedResponse(status: .created, response: created)
    }

    static let tooMany = APIError(
        .conflict, code: "TOO_MANY_ALERTS",
        message: "A tenant has at most \(AlertStore.maxPerTenant) alerts; delete one (GET /v1/alerts lists them) before adding another.")

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> Page<UsageAlert> {
        let tenant = try context.tenantInScope(request.uri.queryParameters.get("tenant_id"))
        return try PageRequest(request.uri.queryParameters).page(of: try await store.list(tenant: tenant), id: \.id)
    }

    @Sendable func show(_ request: Request, context: TallyRequestContext) async throws -> UsageAlert {
        try await visibleAlert(context)
    }

    @Sendable func delete(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let alert = try await visibleAlert(context)
        guard try await store.delete(id: alert.id, tenant: alert.tenantID) else { throw APIError.notFound("alert") }
        context.logger.info("alert deleted", metadata: ["tenant.id": "\(alert.tenantID)", "alert.id": "\(alert.id)"])
        return .noContent
    }

    private func visibleAlert(_ context: TallyRequestContext) async throws -> UsageAlert {
        let principal = try context.requirePrincipal()
        guard let id = UUID(uuidString: context.parameters.get("alertID") ?? ""), let alert = try await store.alert(id: id),
            principal.canAccess(tenant: alert.tenantID)
        else { throw APIError.notFound("alert") }
        return alert
    }
}

extension TallyRequestContext {
    /// The tenant a request acts on: a tenant key's own (it may name it, never
    /// another: 404), or for the admin token the `tenant_id` it must give.
    func tenantInScope(_ named: String?) throws -> UUID {
        let principal = try requirePrincipal()
        if let named {
            guard let id = UUID(uuidString: named) else { throw APIError.invalid("tenant_id", "must be a tenant id (UUID)") }
            guard principal.canAccess(tenant: id) else { throw APIError.notFound("tenant", field: "tenant_id") }
            return id
        }
        guard case .tenant(let own) = principal else { throw APIError.invalid("tenant_id", "is required with the admin token") }
        return own
    }
}

struct CreateAlertRequest: ClosedRequestBody {
    let tenantID: String?
    let metric: String
    let kind: String
    let thresholdValue: DecimalInput?
    let thresholdPercentage: DecimalInput?
    let channels: [String]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case metric, kind, channels
        case tenantID = "tenant_id"
        case thresholdValue = "threshold_value"
        case thresholdPercentage = "threshold_percentage"
    }
}

/// A decimal given as a JSON number or a string, kept as its exact text.
struct DecimalInput: Decodable {
    let text: String

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self.text = text
        } else {
            self.text = "\(try container.decode(Decimal.self))"
        }
    }
}

extension UsageAlert: ResponseEncodable {}
