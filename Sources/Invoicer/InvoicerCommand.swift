import ArgumentParser
import TallyRuntime

/// `invoicer`: Issues one invoice per subscription period, renders PDFs and syncs Stripe.
///
/// Its work loop lands with its own issue; today it reads and checks its
/// configuration (`invoicer config`) and can apply the schema (`invoicer migrate`).
@main
struct InvoicerCommand: AsyncParsableCommand, TallyProcess {
    static let processName = "invoicer"
    static let configurationKeys: [ConfigurationKey] = [.amqpURL, .databaseURL, .logLevel, .logFormat]

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Issues one invoice per subscription period, renders PDFs and syncs Stripe.",
        discussion: ConfigurationReport.helpText(configurationKeys),
        subcommands: [ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}
