import ArgumentParser
import Foundation
import Hummingbird
import TallyRuntime

/// `aggregator`: counts usage events exactly once from RabbitMQ into PostgreSQL rollups.
@main
struct AggregatorCommand: AsyncParsableCommand, TallyProcess {
    static let processName = "aggregator"
    static var configurationKeys: [ConfigurationKey] { AggregatorConfiguration.keys }
    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Counts usage events exactly once from RabbitMQ into PostgreSQL rollups.",
        discussion: ConfigurationReport.helpText(AggregatorConfiguration.keys),
        subcommands: [Run.self, DeadLetterCommand.self, PartitionCommand.self, ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )

    /// `aggregator run`: consume until SIGTERM, then finish the batches in hand and exit.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Consume the usage queue into PostgreSQL until SIGTERM.",
            discussion: ConfigurationReport.helpText(AggregatorConfiguration.keys))

        func run() async throws {
            AllocatorTuning.apply(environment: ProcessInfo.processInfo.environment)
            let reader = ConfigurationReader()
            let logger = try LogBootstrap.configure(reader, label: "aggregator")
            let configuration = try AggregatorConfiguration(reader: reader)
            let app = try buildApplication(configuration, logger: logger)
            try await app.runService()
        }
    }
}
