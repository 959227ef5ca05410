import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TallyRuntime

/// `producer`: the ingest service for usage events, and a bulk publisher.
@main
struct ProducerCommand: AsyncParsableCommand, TallyServer {
    static let processName = "producer"
    static var configurationKeys: [ConfigurationKey] { ProducerConfiguration.keys }
    static let serveCommandName = "serve"
    static let serveAbstract = "Run the ingest HTTP service (POST /v1/events) until SIGTERM, then drain and exit."

    static func buildService(_ configuration: ProducerConfiguration, logger: Logger) async throws -> some Service {
        try await buildApplication(configuration, logger: logger)
    }

    /// ArgumentParser's main, with unreachable servers explained (`CommandLineMain`).
    static func main() async { await CommandLineMain.run(self) }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Accept usage events over HTTP (serve) or from NDJSON files (publish); look after the spool (spool).",
        discussion: ConfigurationReport.helpText(ProducerConfiguration.keys),
        subcommands: [
            ServeCommand<Self>.self, PublishCommand.self, BackfillCommand.self, SpoolCommand.self, ConfigCommand<Self>.self,
            MigrateCommand<Self>.self,
        ]
    )
}

extension ProducerConfiguration: ServerConfiguration {}
