import Hummingbird
import Logging
import NIOCore
import PostgresClient
import TallyHTTP

/// Builds `aggregator run`: the consumers as a service beside a small HTTP server
/// for `/metrics`, `/healthz` and `/readyz`. Production and tests call the same function.
func buildApplication(_ configuration: AggregatorConfiguration, logger: Logger) throws -> some ApplicationProtocol {
    let metrics = AggregatorMetrics()
    let database = PostgresPool(configuration: try PostgresConfiguration(url: configuration.databaseURL), size: 1, logger: logger)
    let router = Router()
    HealthRoutes<BasicRequestContext> { (try? await database.query("SELECT 1")) != nil }.register(on: router)
    router.get("metrics") { _, _ -> Response in
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally-aggregator"),
        logger: logger)
    app.addServices(AggregatorService(configuration: configuration, metrics: metrics, logger: logger))
    return app
}
