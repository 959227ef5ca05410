import ArgumentParser
import TallyRuntime

/// `aggregator`: Counts usage events exactly once from RabbitMQ into PostgreSQL rollups.
///
/// Its work loop lands with its own issue; today it reads and checks its
/// configuration (`aggregator config`) and can apply the schema (`aggregator migrate`).
@main
struct AggregatorCommand: AsyncParsableCommand, TallyProcess {
    static let processName = "aggregator"
    static let configurationKeys: [ConfigurationKey] = [.amqpURL, .databaseURL, .logLevel, .logFormat]

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Counts usage events exactly once from RabbitMQ into PostgreSQL rollups.",
        discussion: ConfigurationReport.helpText(configurationKeys),
        subcommands: [ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}
