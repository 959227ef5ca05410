import ArgumentParser
import TallyRuntime

/// `producer`: Accepts usage events (the metering library's ingest service and the NDJSON publisher).
///
/// Its work loop lands with its own issue; today it reads and checks its
/// configuration (`producer config`) and can apply the schema (`producer migrate`).
@main
struct ProducerCommand: AsyncParsableCommand, TallyProcess {
    static let processName = "producer"
    static let configurationKeys: [ConfigurationKey] = [.amqpURL, .databaseURL, .logLevel, .logFormat]

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Accepts usage events (the metering library's ingest service and the NDJSON publisher).",
        discussion: ConfigurationReport.helpText(configurationKeys),
        subcommands: [ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}
