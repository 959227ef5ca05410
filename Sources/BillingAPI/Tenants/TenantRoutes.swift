import Foundation
import Hummingbird
import Logging
import TallyHTTP
import TallyStore

/// `/v1/tenants`: create tenants (admin only), read one, and manage its API keys.
///
/// A tenant key reaches only its own tenant; another tenant's id answers 404, so a
/// key cannot even learn which ids exist (SPEC §6).
struct TenantRoutes {
    let store: TenantStore
    let authenticator: APIKeyAuthenticator
    var defaultPaymentProvider: PaymentProvider = .none

    func register(on router: Router<TallyRequestContext>) {
        let tenants = router.group("v1/tenants")
        tenants.post(use: create)
        tenants.get(":tenantID", use: show)
        tenants.patch(":tenantID", use: update)
        tenants.get(":tenantID/api-keys", use: listKeys)
        tenants.get(":tenantID/payment-methods", use: listPaymentMethods)
        tenants.post(":tenantID/api-keys", use: issueKey)
        tenants.delete(":tenantID/api-keys/:keyID", use: revokeKey)
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<WithAPIKey<Tenant>> {
        try context.requireAdmin()
        let body = try await request.decodeJSON(CreateTenantRequest.self, context: context)
        let newTenant: NewTenant
        do {
            newTenant = try NewTenant(
                name: body.name, billingEmail: body.billingEmail, taxRateBps: body.taxRateBps, paymentProvider: body.paymentProvider,
                defaultProvider: defaultPaymentProvider)
        } catch {
            throw APIError.invalid(error.field, error.message)
        }
        let (tenant, key) = try await store.create(newTenant)
        context.logger.info("tenant created", metadata: ["tenant.id": "\(tenant.id)"])
        return EditedResponse(status: .created, response: WithAPIKey(object: tenant, apiKey: key.secret))
    }

    /// A changed name, billing email or tax rate. A tenant key may correct its own name and
    /// address; the tax rate is the operator's (a tenant lowering it would lower what it owes).
    @Sendable func update(_ request: Request, context: TallyRequestContext) async throws -> Tenant {
        let id = try visibleTenantID(context)
        let body = try await request.decodeJSON(UpdateTenantRequest.self, context: context)
        if body.taxRateBps != nil, try context.requirePrincipal() != .admin {
            throw APIError(
                .forbidden, code: "FORBIDDEN", message: "Only the operator (admin token) changes a tenant's tax rate.", field: "tax_rate_bps")
        }
        let change: TenantChange
        do {
            change = try TenantChange(name: body.name, billingEmail: body.billingEmail, taxRateBps: body.taxRateBps)
        } catch {
            throw APIError.invalid(error.field, error.message)
        }
        guard let tenant = try await store.update(id: id, change) else { throw APIError.notFound("tenant") }
        let fields = [
            change.name.map { _ in "name" }, change.billingEmail.map { _ in "billing_email" }, change.taxRateBps.map { _ in "tax_rate_bps" },
        ]
        context.logger.info("tenant updated", metadata: ["tenant.id": "\(id)", "fields": "\(fields.compactMap { $0 }.joined(separator: ","))"])
        return tenant
    }

    @Sendable func show(_ request: Request, context: TallyRequestContext) async throws -> Tenant {
        let id = try visibleTenantID(context)
        guard let tenant = try await store.tenant(id: id) else { throw APIError.notFound("tenant") }
        return tenant
    }

    @Sendable func listKeys(_ request: Request, context: TallyRequestContext) async throws -> Page<APIKeySummary> {
        let id = try visibleTenantID(context)
        guard try await store.tenant(id: id) != nil else { throw APIError.notFound("tenant") }
        return try PageRequest(request.uri.queryParameters).page(of: try await store.keys(tenant: id), id: \.id)
    }

    /// The cards Stripe holds for the tenant, as Stripe reported them: provider id, brand,
    /// last four digits and expiry — never a card number.
    @Sendable func listPaymentMethods(_ request: Request, context: TallyRequestContext) async throws -> PaymentMethodList {
        let id = try visibleTenantID(context)
        guard try await store.tenant(id: id) != nil else { throw APIError.notFound("tenant") }
        return PaymentMethodList(data: try await store.paymentMethods(tenant: id))
    }

    /// Key rotation: a new key works at once; the old ones keep working until revoked
    /// (or right away, with `{"revoke_others": true}`), so clients can roll over.
    @Sendable func issueKey(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<WithAPIKey<APIKeySummary>> {
        let id = try visibleTenantID(context)
        let body = try await request.decodeOptionalJSON(IssueKeyRequest.self, context: context)
        guard try await store.tenant(id: id) != nil else { throw APIError.notFound("tenant") }
        let (summary, key) = try await store.issueKey(tenant: id, revokingOthers: body?.revokeOthers ?? false)
        if body?.revokeOthers == true { await authenticator.forgetCachedKeys() }
        context.logger.info("api key issued", metadata: ["tenant.id": "\(id)", "api_key.id": "\(summary.id)"])
        return EditedResponse(status: .created, response: WithAPIKey(object: summary, apiKey: key.secret))
    }

    @Sendable func revokeKey(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let id = try visibleTenantID(context)
        guard let keyID = UUID(uuidString: context.parameters.get("keyID") ?? "") else {
            throw APIError.notFound("API key", field: "key_id")
        }
        guard try await store.revokeKey(id: keyID, tenant: id) else { throw APIError.notFound("API key", field: "key_id") }
        await authenticator.forgetCachedKeys()
        context.logger.info("api key revoked", metadata: ["tenant.id": "\(id)", "api_key.id": "\(keyID)"])
        return .noContent
    }

    /// The `:tenantID` of the path, when the principal may see it; 404 otherwise.
    private func visibleTenantID(_ context: TallyRequestContext) throws -> UUID {
        let principal = try context.requirePrincipal()
        guard let id = UUID(uuidString: context.parameters.get("tenantID") ?? ""), principal.canAccess(tenant: id)
        else { throw APIError.notFound("tenant") }
        return id
    }
}

struct CreateTenantRequest: ClosedRequestBody {
    let name: String
    let billingEmail: String
    let taxRateBps: Int?
    let paymentProvider: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name
        case billingEmail = "billing_email"
        case taxRateBps = "tax_rate_bps"
        case paymentProvider = "payment_provider"
    }
}

struct UpdateTenantRequest: ClosedRequestBody {
    let name: String?
    let billingEmail: String?
    let taxRateBps: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name
        case billingEmail = "billing_email"
        case taxRateBps = "tax_rate_bps"
    }
}

struct PaymentMethodList: ResponseEncodable {
    let data: [PaymentMethodSummary]
}

struct IssueKeyRequest: ClosedRequestBody {
    let revokeOthers: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case revokeOthers = "revoke_others"
    }
}

/// An object (a new tenant, or a new key's summary) plus the API key secret,
/// shown this once and never again.
struct WithAPIKey<Object: Encodable & Sendable>: ResponseEncodable {
    let object: Object
    let apiKey: String

    func encode(to encoder: any Encoder) throws {
        try object.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(apiKey, forKey: .apiKey)
    }

    enum Keys: String, CodingKey {
        case apiKey = "api_key"
    }
}

extension Tenant: ResponseEncodable {}
