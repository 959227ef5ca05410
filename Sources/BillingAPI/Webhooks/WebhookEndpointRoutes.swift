import Foundation
import Hummingbird
import Logging
import Notifications
import TallyHTTP
import TallyMessaging
import TallyStore

/// `/v1/webhook-endpoints`: where a tenant's billing events are POSTed, signed. The tenant
/// key manages its own endpoints, the admin token any tenant's (naming `tenant_id`);
/// another tenant's endpoint answers 404. The signing secret is shown once, at creation
/// and at rotation. URLs must be http(s) and resolve to public addresses (SSRF) unless
/// `TALLY_WEBHOOK_ALLOW_PRIVATE=1`.
struct WebhookEndpointRoutes {
    let store: WebhookEndpointStore
    let addresses: WebhookAddressPolicy

    func register(on router: Router<TallyRequestContext>) {
        let endpoints = router.group("v1/webhook-endpoints")
        endpoints.post(use: create)
        endpoints.get(use: list)
        endpoints.get(":endpointID", use: show)
        endpoints.patch(":endpointID", use: update)
        endpoints.delete(":endpointID", use: delete)
        endpoints.post(":endpointID/rotate-secret", use: rotate)
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CreatedEndpoint> {
        let body = try await request.decodeJSON(NewEndpointRequest.self, context: context)
        let tenant = try context.tenantInScope(body.tenantID)
        let (endpoint, secret) = try await create(tenant: tenant, url: body.url, events: body.events, description: body.description)
        context.logger.info("webhook endpoint created", metadata: ["tenant.id": "\(tenant)", "webhook_endpoint.id": "\(endpoint.id)"])
        return EditedResponse(status: .created, response: CreatedEndpoint(endpoint: endpoint, secret: secret.value))
    }

    /// Creates an endpoint of `tenant` after checking every field (the API and the dashboard's form).
    func create(tenant: UUID, url: String?, events: [String]?, description: String?) async throws -> (WebhookEndpoint, WebhookSecret) {
        guard let url else { throw APIError.invalid("url", "is required: the http(s) URL to POST events to") }
        let tooMany = APIError(
            .conflict, code: "TOO_MANY_ENDPOINTS",
            message: "A tenant has at most \(Self.maxEndpoints) webhook endpoints; delete one, or subscribe one to more events.")
        // Asked first so a full tenant hears so before its URL is resolved; the store counts again under a lock.
        guard try await store.list(tenant: tenant).count < Self.maxEndpoints else { throw tooMany }
        let stored: (WebhookEndpoint, WebhookSecret)?
        do {
            stored = try await store.create(
                tenant: tenant, url: try await checked(url), events: try Self.events(events ?? ["*"]),
                description: try Self.description(description), limit: Self.maxEndpoints)
        } catch is UnknownTenant {
            throw APIError.notFound("tenant", field: "tenant_id")
        }
        guard let created = stored else { throw tooMany }
        return created
    }

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> Page<WebhookEndpoint> {
        let tenant = try context.tenantInScope(request.uri.queryParameters.get("tenant_id"))
        return try PageRequest(request.uri.queryParameters).page(of: try await store.list(tenant: tenant), id: \.id)
    }

    @Sendable func show(_ request: Request, context: TallyRequestContext) async throws -> WebhookEndpoint {
        try await visibleEndpoint(context)
    }

    @Sendable func update(_ request: Request, context: TallyRequestContext) async throws -> WebhookEndpoint {
        let endpoint = try await visibleEndpoint(context)
        let body = try await request.decodeJSON(EndpointChangeRequest.self, context: context)
        var url: String?
        if let given = body.url { url = try await checked(given) }
        guard
            let updated = try await store.update(
                id: endpoint.id, tenant: endpoint.tenantID, url: url, events: try body.events.map(Self.events), active: body.active,
                description: try Self.description(body.description))
        else { throw APIError.notFound("webhook endpoint") }
        return updated
    }

    @Sendable func delete(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let endpoint = try await visibleEndpoint(context)
        guard try await store.delete(id: endpoint.id, tenant: endpoint.tenantID) else { throw APIError.notFound("webhook endpoint") }
        context.logger.info("webhook endpoint deleted", metadata: ["webhook_endpoint.id": "\(endpoint.id)"])
        return .noContent
    }

    @Sendable func rotate(_ request: Request, context: TallyRequestContext) async throws -> RotatedSecret {
        let endpoint = try await visibleEndpoint(context)
        guard let secret = try await store.rotateSecret(id: endpoint.id, tenant: endpoint.tenantID) else {
            throw APIError.notFound("webhook endpoint")
        }
        context.logger.info("webhook secret rotated", metadata: ["webhook_endpoint.id": "\(endpoint.id)"])
        return RotatedSecret(id: endpoint.id, secret: secret.value, previousSecretValidForSeconds: 86_400)
    }

    private func visibleEndpoint(_ context: TallyRequestContext) async throws -> WebhookEndpoint {
        let principal = try context.requirePrincipal()
        guard let id = UUID(uuidString: context.parameters.get("endpointID") ?? ""), let endpoint = try await store.endpoint(id: id),
            principal.canAccess(tenant: endpoint.tenantID)
        else { throw APIError.notFound("webhook endpoint") }
        return endpoint
    }

    private func checked(_ url: String) async throws -> String {
        do {
            return try await addresses.checkNew(url).url
        } catch {
            throw APIError.invalid("url", "\(error)")
        }
    }

    /// Every event fans out to each of a tenant's endpoints: a bound keeps one event's work bounded.
    static let maxEndpoints = 16

    static func description(_ text: String?) throws -> String? {
        // Counted as PostgreSQL counts (code points): 500 graphemes of combining marks are more.
        guard let text, text.unicodeScalars.count > 500 else { return text }
        throw APIError.invalid("description", "is at most 500 characters")
    }

    /// Known event types, or `*` for all; at least one, no repeats.
    static func events(_ given: [String]) throws -> [String] {
        guard !given.isEmpty else { throw APIError.invalid("events", "name at least one event type, or \"*\" for all") }
        for (index, type) in given.enumerated() where type != "*" && !BillingEvent.types.contains(type) {
            throw APIError.invalid("events[\(index)]", "unknown event type \"\(type)\"; known: \(BillingEvent.types.joined(separator: ", ")) or *")
        }
        return Array(Set(given)).sorted()
    }
}

/// `POST /v1/webhook-endpoints` (an endpoint starts active).
struct NewEndpointRequest: ClosedRequestBody {
    let tenantID: String?
    let url: String?
    let events: [String]?
    let description: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case url, events, description
        case tenantID = "tenant_id"
    }
}

/// `PATCH /v1/webhook-endpoints/{id}` (the tenant is the endpoint's).
struct EndpointChangeRequest: ClosedRequestBody {
    let url: String?
    let events: [String]?
    let active: Bool?
    let description: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case url, events, active, description
    }
}

/// The endpoint and its signing secret, shown this once.
struct CreatedEndpoint: ResponseEncodable {
    let endpoint: WebhookEndpoint
    let secret: String

    func encode(to encoder: any Encoder) throws {
        try endpoint.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(secret, forKey: .secret)
    }

    enum Keys: String, CodingKey { case secret }
}

struct RotatedSecret: ResponseEncodable {
    let id: UUID
    let secret: String
    let previousSecretValidForSeconds: Int

    enum CodingKeys: String, CodingKey {
        case id, secret
        case previousSecretValidForSeconds = "previous_secret_valid_for_seconds"
    }
}

extension WebhookEndpoint: ResponseEncodable {}
