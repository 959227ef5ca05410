import CivilTime
import DiskSpool
import Foundation
import Hummingbird
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyHTTP
import TallyStore

/// Builds the ingest service; production and tests call the same function.
func buildApplication(
    _ configuration: ProducerConfiguration, logger: Logger, clock: @escaping @Sendable () -> Date = { TallyClock.now() }
) async throws -> some ApplicationProtocol {
    try await buildIngest(configuration, logger: logger, clock: clock).app
}

/// The ingest service and the publisher it runs (which a test stops, as a graceful
/// shutdown does, to see what the service answers then).
func buildIngest(
    _ configuration: ProducerConfiguration, logger: Logger, clock: @escaping @Sendable () -> Date
) async throws -> (app: some ApplicationProtocol, publisher: DurablePublisher) {
    let pool = PostgresPool(
        configuration: try PostgresConfiguration(url: configuration.databaseURL),
        size: configuration.databasePoolSize, logger: logger)
    let spool = try await DiskSpool.open(directory: configuration.spoolDirectory, maxBytes: configuration.spoolMaxBytes)
    let counters = MeteringCounters()
    let publisher = DurablePublisher(
        configuration: try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-producer"),
        spool: spool, logger: logger, confirmTimeout: .seconds(5), counters: counters, refusalPolicy: RefusalPolicy(),
        exchange: configuration.usageExchange)
    let tenants = TenantStore(pool: pool)
    let authenticator = APIKeyAuthenticator(adminToken: configuration.adminToken) { key in try await tenants.tenantOwning(key) }

    let router = Router(context: IngestRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(middleware: ErrorMiddleware { error in (error as? PostgresError)?.isConnectionError ?? false })
    router.add(middleware: ContentEncodingMiddleware())
    HealthRoutes<IngestRequestContext> { (try? await pool.ping()) != nil }.register(on: router)
    MetricsRoute(counters: counters, spool: spool, authentication: authenticator).register(on: router)
    router.add(middleware: AuthenticationMiddleware(authenticator: authenticator, publicPaths: ["/healthz", "/readyz", "/metrics"]))
    // `POST /v1/events?dry_run=true` would count the events: no query parameter is taken.
    let operations = QueryParameterRules(["POST /v1/events": []])
    router.add(middleware: OperationRulesMiddleware(rules: operations))
    IngestRoutes(publisher: publisher, tenants: KnownTenants(store: tenants), clock: clock).register(on: router)

    var app = Application(
        router: router, server: .tally,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally-producer"),
        logger: logger)
    app.addServices(PublisherService(publisher: publisher))
    return (app, publisher)
}

/// Runs the publisher beside the HTTP server; on shutdown it settles what it holds.
struct PublisherService: Service {
    let publisher: DurablePublisher

    func run() async throws {
        await withGracefulShutdownHandler {
            await publisher.run()
        } onGracefulShutdown: {
            publisher.finish()
        }
    }
}
