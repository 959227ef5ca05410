import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TallyRuntime

/// `aggregator`: counts usage events exactly once from RabbitMQ into PostgreSQL rollups.
@main
struct AggregatorCommand: AsyncParsableCommand, TallyServer {
    static let processName = "aggregator"
    static var configurationKeys: [ConfigurationKey] { AggregatorConfiguration.keys }
    static let serveCommandName = "run"
    static let serveAbstract = "Consume the usage queue into PostgreSQL until SIGTERM, then finish the batches in hand and exit."

    static func prepareProcess() {
        AllocatorTuning.apply(environment: ProcessInfo.processInfo.environment)
    }

    static func buildService(_ configuration: AggregatorConfiguration, logger: Logger) async throws -> some Service {
        try buildApplication(configuration, logger: logger)
    }
    /// ArgumentParser's main, with unreachable servers explained (`CommandLineMain`).
    static func main() async { await CommandLineMain.run(self) }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Counts usage events exactly once from RabbitMQ into PostgreSQL rollups.",
        discussion: ConfigurationReport.helpText(AggregatorConfiguration.keys),
        subcommands: [ServeCommand<Self>.self, DeadLetterCommand.self, PartitionCommand.self, ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}

extension AggregatorConfiguration: ServerConfiguration {}
