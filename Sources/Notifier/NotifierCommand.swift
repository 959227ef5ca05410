import ArgumentParser
import Foundation
import Hummingbird
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyHTTP
import TallyMessaging
import TallyRuntime

/// `notifier`: emails invoices (with their PDFs) to finance and tenants, emails payment
/// failures and usage alerts, and delivers signed webhooks.
@main
struct NotifierCommand: AsyncParsableCommand, TallyServer {
    static let processName = "notifier"
    static var configurationKeys: [ConfigurationKey] { NotifierConfiguration.keys }
    static let serveCommandName = "run"
    static let serveAbstract = "Consume billing events into emails and webhooks until SIGTERM (run as many processes as you like)."

    static func buildService(_ configuration: NotifierConfiguration, logger: Logger) async throws -> some Service {
        try buildApplication(configuration, logger: logger)
    }

    /// ArgumentParser's main, with unreachable servers explained (`CommandLineMain`).
    static func main() async { await CommandLineMain.run(self) }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Emails invoices (with PDFs), payment failures and usage alerts, and delivers signed webhooks.",
        discussion: ConfigurationReport.helpText(NotifierConfiguration.keys),
        subcommands: [ServeCommand<Self>.self, DeadLetterCommand.self, ResendCommand.self, ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}

extension NotifierConfiguration: ServerConfiguration {}

/// Builds `notifier run`: the billing-event consumers (the shared `QueueWorker` with
/// `NotificationHandler`) beside `/metrics`, `/healthz` and `/readyz`.
func buildApplication(_ configuration: NotifierConfiguration, logger: Logger) throws -> some ApplicationProtocol {
    let metrics = NotifierMetrics()
    let amqp = try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-notifier")
    let database = PostgresPool(configuration: try PostgresConfiguration(url: configuration.databaseURL), size: 1, logger: logger)
    let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
    let router = Router()
    HealthRoutes<BasicRequestContext> {
        (try? await database.ping()) != nil && !metrics.snapshot.mailServerDown
    }.register(on: router)
    router.get("metrics") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: .init(string: metrics.render())))
    }
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally-notifier"),
        logger: logger)
    let handler = try NotificationHandler(configuration: configuration, metrics: metrics)
    app.addServices(
        PublisherService(publisher),
        QueueWorker(settings: configuration.worker, amqp: amqp, handler: handler, publisher: publisher, observer: metrics.worker, logger: logger))
    return app
}
