import ArgumentParser
import Foundation
import Hummingbird
import Logging
import TallyRuntime

/// `billing-api`: the HTTP server of the billing API and the dashboard.
@main
struct BillingAPICommand: AsyncParsableCommand, TallyProcess {
    static let processName = "billing-api"
    static var configurationKeys: [ConfigurationKey] { BillingAPIConfiguration.keys }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Serve the billing API (tenants, usage, invoices) and the dashboard.",
        discussion: ConfigurationReport.helpText(BillingAPIConfiguration.keys),
        subcommands: [Serve.self, ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )

    /// `billing-api serve`: runs until SIGTERM or SIGINT, then drains and exits.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the HTTP server.", discussion: ConfigurationReport.helpText(BillingAPIConfiguration.keys))

        @Option(help: "Address to listen on (overrides BILLING_API_HOST).") var host: String?
        @Option(help: "Port to listen on (overrides BILLING_API_PORT).") var port: Int?

        func run() async throws {
            let reader = ConfigurationReader()
            let logger = try LogBootstrap.configure(reader, label: "billing-api")
            var configuration = try BillingAPIConfiguration(reader: reader)
            if let host { configuration.host = host }
            if let port { configuration.port = port }
            let app = try await buildApplication(configuration, logger: logger)
            try await app.runService()
        }
    }
}
