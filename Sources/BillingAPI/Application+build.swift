import CivilTime
import Foundation
import Hummingbird
import InvoicePDF
import Invoicing
import Logging
import NIOCore
import Notifications
import PostgresClient
import TallyHTTP
import TallyRuntime
import TallyStore

/// Builds the billing API: the same function serves production (`billing-api serve`)
/// and the tests, which call it with their own configuration.
func buildApplication(
    _ configuration: BillingAPIConfiguration, logger: Logger
) async throws -> some ApplicationProtocol {
    let pool = PostgresPool(
        configuration: try PostgresConfiguration(url: configuration.databaseURL),
        size: configuration.databasePoolSize, logger: logger)
    let router = try buildRouter(pool: pool, configuration: configuration)
    return Application(
        router: router, server: .tally,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally-billing-api"),
        logger: logger)
}

/// The routes and middleware, separate from the server so tests can drive them.
func buildRouter(pool: PostgresPool, configuration: BillingAPIConfiguration) throws -> Router<TallyRequestContext> {
    let adminToken = configuration.adminToken
    let tenants = TenantStore(pool: pool)
    let authenticator = APIKeyAuthenticator(adminToken: adminToken) { key in try await tenants.tenantOwning(key) }
    // HEAD is answered as its GET without the body (RFC 9110).
    let router = Router(context: TallyRequestContext.self, options: .autoGenerateHeadEndpoints)
    let metrics = RequestMetrics()
    router.add(middleware: RequestMetrics.Middleware(metrics: metrics))
    router.add(middleware: RequestLogMiddleware(.info))
    router.add(middleware: ErrorMiddleware { error in (error as? PostgresError)?.isConnectionError ?? false })
    router.add(middleware: ContentEncodingMiddleware())
    HealthRoutes<TallyRequestContext> {
        (try? await pool.ping()) != nil
    }.register(on: router)
    // Stripe authenticates its webhooks with a signature, not a bearer token.
    // The dashboard authenticates with its session cookie, not a bearer token.
    router.add(
        middleware: AuthenticationMiddleware(
            authenticator: authenticator, publicPaths: ["/healthz", "/readyz", "/metrics", "/openapi.json", StripeWebhookRoutes.path],
            publicPrefixes: ["/dashboard"]))
    router.get("metrics") { _, _ in
        Response(
            status: .ok, headers: [.contentType: PrometheusText.contentType],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render(authentication: authenticator.counters))))
    }
    router.get("openapi.json") { _, _ in
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
    }
    // The API's routes take the query parameters their operations document, and no others;
    // a path served with other methods is a 405 naming them.
    let operations = try QueryParameterRules(openAPI: OpenAPIDocument.json)
    router.add(middleware: NoStoreMiddleware())
    router.add(middleware: OperationRulesMiddleware(rules: operations))
    // A POST, PATCH or DELETE retried with its Idempotency-Key is answered again, not done twice.
    let idempotent = IdempotentRequests(pool: pool, secret: adminToken)
    router.add(middleware: IdempotencyMiddleware(requests: idempotent))
    TenantRoutes(store: tenants, authenticator: authenticator, defaultPaymentProvider: configuration.defaultPaymentProvider)
        .register(on: router)
    UsageRoutes(pool: pool).register(on: router)
    UsageHistoryRoutes(pool: pool).register(on: router)
    AlertRoutes(store: AlertStore(pool: pool)).register(on: router)
    CatalogRoutes(store: CatalogStore(pool: pool)).register(on: router)
    let endpoints = WebhookEndpointRoutes(
        store: WebhookEndpointStore(pool: pool), addresses: WebhookAddressPolicy(allowPrivate: configuration.allowPrivateWebhooks))
    endpoints.register(on: router)
    SubscriptionRoutes(store: SubscriptionStore(pool: pool), clock: { TallyClock.now() }).register(on: router)
    StripeWebhookRoutes(
        pool: pool, signature: configuration.stripeWebhookSecret.map { StripeWebhookSignature(secret: $0) }, clock: { Date() }
    ).register(on: router)
    InvoiceRoutes(
        pool: pool, invoices: InvoiceStore(pool: pool), tenants: tenants, grace: Double(configuration.graceSeconds),
        seller: configuration.seller.party
    ).register(on: router)
    DashboardRoutes(
        pool: pool, sessions: DashboardSessionStore(pool: pool), idempotent: idempotent, tenants: tenants,
        invoices: InvoiceStore(pool: pool),
        alerts: AlertStore(pool: pool), endpoints: endpoints, authenticator: authenticator, adminToken: adminToken,
        seller: configuration.seller.party, library: try DashboardTemplates.library(), secureCookies: configuration.secureCookies
    ).register(on: router)
    return router
}

/// `Cache-Control: no-store` on every `/v1` answer that does not say otherwise: they are one
/// tenant's invoices and usage, and some show a secret once (a new tenant's API key, an
/// endpoint's signing secret) that no cache between the caller and us may keep.
struct NoStoreMiddleware: RouterMiddleware {
    typealias Context = TallyRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if request.uri.path.hasPrefix("/v1/"), response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}
