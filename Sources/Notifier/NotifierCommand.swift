import ArgumentParser
import TallyRuntime

/// `notifier`: Emails invoices and usage alerts and delivers signed webhooks.
///
/// Its work loop lands with its own issue; today it reads and checks its
/// configuration (`notifier config`) and can apply the schema (`notifier migrate`).
@main
struct NotifierCommand: AsyncParsableCommand, TallyProcess {
    static let processName = "notifier"
    static let configurationKeys: [ConfigurationKey] = [.amqpURL, .databaseURL, .smtpURL, .financeEmail, .logLevel, .logFormat]

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Emails invoices and usage alerts and delivers signed webhooks.",
        discussion: ConfigurationReport.helpText(configurationKeys),
        subcommands: [ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}
