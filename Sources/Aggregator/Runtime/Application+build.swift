import Hummingbird
import Logging
import NIOCore
import PostgresClient
import RabbitMQClient
import TallyHTTP
import TallyMessaging
import TallyOutbox
import TallyRuntime

/// Builds `aggregator run`: the usage queue's consumers (the shared `QueueWorker` with
/// `UsageHandler`), the outbox's sweeper and the hourly upkeep as services beside a small HTTP server for
/// `/metrics`, `/healthz` and `/readyz`. Production and tests call the same function.
func buildApplication(_ configuration: AggregatorConfiguration, logger: Logger) throws -> some ApplicationProtocol {
    let cache = UsageConfigCache()
    let metrics = AggregatorMetrics(configCache: cache)
    let amqp = try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-aggregator")
    var databaseConfiguration = try PostgresConfiguration(url: configuration.databaseURL)
    // A batch's sorts (tens of thousands of rows) in memory, not in temporary files.
    databaseConfiguration.sessionSettings["work_mem"] = "64MB"
    let database = PostgresPool(configuration: databaseConfiguration, size: 1, logger: logger)
    let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
    let relay = BillingEventRelay(publisher: publisher, logger: logger)
    let router = Router()
    HealthRoutes<BasicRequestContext> { (try? await database.ping()) != nil }.register(on: router)
    router.get("metrics") { _, _ -> Response in
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally-aggregator"),
        logger: logger)
    var handler = UsageHandler(database: databaseConfiguration, metrics: metrics, cache: cache, afterCommit: relay.afterCommit)
    handler.tenantHoursPerTransaction = configuration.tenantHoursPerTransaction
    // Shut down in reverse: the upkeep, the outbox's sweeper, then the consumers (finishing
    // their batches), then the publisher.
    app.addServices(
        PublisherService(publisher),
        QueueWorker(settings: configuration.worker, amqp: amqp, handler: handler, publisher: publisher, observer: metrics, logger: logger),
        OutboxRelayService(relay: relay.outbox, database: databaseConfiguration, logger: logger),
        Upkeep(pool: PostgresPool(configuration: databaseConfiguration, size: 1, logger: logger), logger: logger))
    return app
}
