import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TallyRuntime

/// `billing-api`: the HTTP server of the billing API and the dashboard.
@main
struct BillingAPICommand: AsyncParsableCommand, TallyServer {
    static let processName = "billing-api"
    static var configurationKeys: [ConfigurationKey] { BillingAPIConfiguration.keys }
    static let serveCommandName = "serve"
    static let serveAbstract = "Run the HTTP server until SIGTERM or SIGINT, then drain and exit."

    static func buildService(_ configuration: BillingAPIConfiguration, logger: Logger) async throws -> some Service {
        try await buildApplication(configuration, logger: logger)
    }

    /// ArgumentParser's main, with unreachable servers explained (`CommandLineMain`).
    static func main() async { await CommandLineMain.run(self) }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Serve the billing API (tenants, usage, invoices) and the dashboard.",
        discussion: ConfigurationReport.helpText(BillingAPIConfiguration.keys),
        subcommands: [ServeCommand<Self>.self, ConfigCommand<Self>.self, MigrateCommand<Self>.self]
    )
}

extension BillingAPIConfiguration: ServerConfiguration {}
