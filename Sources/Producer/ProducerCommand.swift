import ArgumentParser
import Foundation
import Hummingbird
import Logging
import TallyRuntime

/// `producer`: the ingest service for usage events, and a bulk publisher.
@main
struct ProducerCommand: AsyncParsableCommand, TallyProcess {
    static let processName = "producer"
    static var configurationKeys: [ConfigurationKey] { ProducerConfiguration.keys }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Accept usage events over HTTP (serve) or from NDJSON files (publish); look after the spool (spool).",
        discussion: ConfigurationReport.helpText(ProducerConfiguration.keys),
        subcommands: [Serve.self, PublishCommand.self, BackfillCommand.self, SpoolCommand.self, ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )

    /// `producer serve`: `POST /v1/events` until SIGTERM, then drains and exits.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the ingest HTTP service.", discussion: ConfigurationReport.helpText(ProducerConfiguration.keys))

        @Option(help: "Address to listen on (overrides PRODUCER_HOST).") var host: String?
        @Option(help: "Port to listen on (overrides PRODUCER_PORT).") var port: Int?

        func run() async throws {
            let reader = ConfigurationReader()
            let logger = try LogBootstrap.configure(reader, label: "producer")
            var configuration = try ProducerConfiguration(reader: reader)
            if let host { configuration.host = host }
            if let port { configuration.port = port }
            let app = try await buildApplication(configuration, logger: logger)
            try await app.runService()
        }
    }
}
