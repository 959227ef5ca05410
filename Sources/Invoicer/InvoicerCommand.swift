import ArgumentParser
import CivilTime
import Foundation
import Hummingbird
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import TallyMessaging
import TallyOutbox
import TallyRuntime
import TallyStore
import UsageEvents

/// `invoicer`: issues one invoice per subscription period.
@main
struct InvoicerCommand: AsyncParsableCommand, TallyServer {
    static let processName = "invoicer"
    static var configurationKeys: [ConfigurationKey] { InvoicerConfiguration.keys }
    static let serveCommandName = "run"
    static let serveAbstract =
        "Consume invoice.generate commands until SIGTERM and serve /metrics (run as many as you like, each on its own INVOICER_PORT or 0)."

    /// `invoicer run`'s service: the consumers, the outbox's sweeper, the Stripe event
    /// applier and push, beside `/metrics`, `/healthz` and `/readyz`. Tests run it in process.
    static func buildService(_ configuration: InvoicerConfiguration, logger: Logger) async throws -> some Service {
        try buildApplication(configuration, logger: logger)
    }

    /// ArgumentParser's main, with unreachable servers explained (`CommandLineMain`).
    static func main() async { await CommandLineMain.run(self) }

    static let configuration = CommandConfiguration(
        commandName: processName,
        abstract: "Issues one invoice per subscription period (billing runs and their commands).",
        discussion: ConfigurationReport.helpText(InvoicerConfiguration.keys),
        subcommands: [
            ServeCommand<Self>.self, Bill.self, DeadLetterCommand.self, StripeCommand.self, CatalogCommand.self, ConfigCommand<Self>.self,
            MigrateCommand<Self>.self,
        ]
    )

    /// `invoicer bill --as-of T`: plan a billing run and follow it to completion.
    struct Bill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue every invoice due at --as-of: plan the run, send its commands, show progress until done.",
            discussion: """
                A run that left invoices failed (their commands are parked: `invoicer dlq list` says why) is re-run, once
                the cause is fixed, with --rerun RUN_ID: a new run at its as_of for the tenants of its failed items; those
                items are marked skipped (superseded), and no invoice is ever issued twice.

                """ + ConfigurationReport.helpText(InvoicerConfiguration.keys))
        @Option(help: "The billing instant (RFC 3339); default now.") var asOf: String?
        @Flag(help: "Return once the commands are sent, without waiting for the invoices.") var noWait = false
        @Option(name: .customLong("tenant"), help: "Bill only this tenant (repeatable); default every tenant.") var tenants: [String] = []
        @Option(help: "Re-run this billing run's failed invoices (its id, from GET /v1/billing-runs or the alert).") var rerun: String?
        @Flag(
            help: "Allow an --as-of in the future: the invoices of periods that have not ended by then are issued and emailed now.")
        var allowFuture = false

        func validate() throws {
            if rerun != nil, asOf != nil || !tenants.isEmpty {
                throw ValidationError("--rerun takes the run's own as_of and tenants; leave out --as-of and --tenant")
            }
            if let rerun, UUID(uuidString: rerun) == nil { throw ValidationError("--rerun must be a billing run id (UUID)") }
            // Checked here as well as read in run(): a usage error thrown there printed the root
            // command's usage instead of this one's.
            if let asOf {
                let date = try Self.instant(asOf)
                if !allowFuture, date > TallyClock.now().addingTimeInterval(300) {
                    throw ValidationError(
                        "--as-of \(date.ISO8601Format()) is in the future: every period ending before it would be invoiced and emailed now; "
                            + "check the date, or pass --allow-future to mean it")
                }
            }
            if tenants.contains(where: { UUID(uuidString: $0) == nil }) { throw ValidationError("--tenant must be a tenant id (UUID)") }
        }

        func run() async throws {
            let reader = ConfigurationReader()
            let logger = {
                var logger = Logger(label: "invoicer.bill")
                logger.logLevel = .error
                return logger
            }()
            let configuration = try InvoicerConfiguration(reader: reader)
            let asOf = try asOf.map(Self.instant) ?? TallyClock.now()
            // A typo (2062 for 2026) would issue and email the invoices of periods that have
            // not happened, for every tenant.
            if !allowFuture, asOf > TallyClock.now().addingTimeInterval(300) {
                throw ValidationError(
                    "--as-of \(asOf.ISO8601Format()) is in the future: every period ending before it would be invoiced and emailed now; "
                        + "check the date, or pass --allow-future to mean it")
            }
            let only = try tenants.map { text in
                guard let id = UUID(uuidString: text) else { throw ValidationError("--tenant must be a tenant id (UUID)") }
                return id
            }
            let pool = PostgresPool(configuration: try PostgresConfiguration(url: configuration.databaseURL), size: 1, logger: logger)
            let plan: BillingRunPlanner.Plan
            if let rerun, let runID = UUID(uuidString: rerun) {
                guard
                    let again = try await pool.withTransaction({
                        try BillingRunPlanner.rerun(runID, grace: Double(configuration.graceSeconds), on: $0)
                    })
                else {
                    await pool.close()
                    throw CommandFailure("no billing run \(rerun); GET /v1/billing-runs lists them")
                }
                guard again.tenants > 0 else {
                    print("billing run \(rerun) has no failed invoice: nothing to re-run")
                    return await pool.close()
                }
                plan = again.plan
                print(
                    "re-running billing run \(rerun) (as of \(again.asOf.ISO8601Format())) for the \(again.tenants) tenant(s) of its failed invoices; "
                        + "its failed items are now skipped, superseded by the new run")
                print("billing run \(plan.runID.uuidString.lowercased()): \(plan.due) invoice(s) due at \(again.asOf.ISO8601Format())")
            } else {
                plan = try await BillingRunStarter.plan(asOf: asOf, tenants: only, configuration: configuration, pool: pool)
                print("billing run \(plan.runID.uuidString.lowercased()): \(plan.due) invoice(s) due at \(asOf.ISO8601Format())")
            }
            try await BillingRunStarter.send(configuration, pool: pool, logger: logger)
            guard !noWait, plan.due > 0 else { return await pool.close() }
            print("waiting for the `invoicer run` processes to issue them (Ctrl-C stops watching; the run goes on)")
            try await follow(plan, pool: pool)
            await pool.close()
        }

        /// Prints progress (a bar on a terminal, a line per change otherwise) until the run completes.
        func follow(_ plan: BillingRunPlanner.Plan, pool: PostgresPool) async throws {
            let terminal = isatty(STDOUT_FILENO) == 1
            var last = -1
            while true {
                guard let status = try await pool.withConnection({ try await $0.withTransaction { try BillingRunStatus.load(plan.runID, on: $0) } })
                else { return }
                let done = status.issued + status.alreadyIssued + status.skipped + status.failed
                if done != last {
                    let width = 30
                    let filled = status.due == 0 ? width : width * done / status.due
                    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                    let line =
                        "[\(bar)] \(done)/\(status.due) issued \(status.issued)"
                        + (status.alreadyIssued > 0 ? ", already issued by another run \(status.alreadyIssued)" : "")
                        + ", skipped \(status.skipped), failed \(status.failed)"
                    if terminal {
                        FileHandle.standardOutput.write(Data(("\r" + line).utf8))
                    } else {
                        print(line)
                    }
                    last = done
                }
                if status.status == "completed" {
                    if terminal { print("") }
                    print(status.failed == 0 ? "completed" : "completed with \(status.failed) failed (parked in invoicer.commands.parked)")
                    return
                }
                try await Task.sleep(for: .milliseconds(300))
            }
        }

        static func instant(_ text: String) throws -> Date {
            guard let date = RFC3339.parse(text) else {
                throw ValidationError("--as-of must be an RFC 3339 time, e.g. 2026-12-01T01:00:00Z")
            }
            guard (2000...9999).contains(Calendar(identifier: .gregorian).dateComponents(in: .gmt, from: date).year ?? 0) else {
                throw ValidationError("--as-of must be in the years 2000 to 9999, as the API's as_of is")
            }
            return date
        }
    }
}

/// `invoicer stripe list|retry`: the invoices waiting for, or refused by, Stripe.
struct StripeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stripe",
        abstract: "Show invoices not yet in Stripe, and retry the ones that failed.",
        subcommands: [List.self, Retry.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List invoices whose Stripe push is pending or failed, with the last error.")
        @Flag(help: "Only the failed ones.") var failed = false

        func run() async throws {
            let pool = try StripeCommand.pool()
            let invoices = try await StripeSyncState.unsynced(onlyFailed: failed, on: pool)
            for invoice in invoices {
                print("\(invoice.number)  \(invoice.id)  \(invoice.status) after \(invoice.attempts) attempt(s)  \(invoice.error)")
            }
            print("\(invoices.count) invoice(s)")
            let events = try await StripeWebhookEvents.failed(on: pool)
            for event in events {
                print("event \(event.id)  \(event.type)  failed at \(event.failedAt)  \(event.error)")
            }
            print("\(events.count) Stripe event(s) not applied (`invoicer stripe retry --events` applies them again)")
            await pool.close()
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make failed Stripe pushes due again (the running invoicers retry them within a second).")
        @Option(help: "Only this invoice (its id or number); default every failed one.") var invoice: String?
        @Flag(help: "Apply the Stripe webhook events that failed again (after fixing their cause), instead of pushes.") var events = false

        func validate() throws {
            if events, invoice != nil { throw ValidationError("--invoice names a push; --events retries webhook events: give one of them") }
        }

        func run() async throws {
            let pool = try StripeCommand.pool()
            if events {
                let due = try await StripeWebhookEvents.retryFailed(on: pool)
                print("\(due) Stripe event(s) due again")
                await pool.close()
                return
            }
            // A named invoice is found as everywhere (id or number, either case); a typo, or one
            // with nothing to retry, is said (exit 1), not "0 due".
            var only: String?
            if let invoice {
                let found = try await pool.withTransaction { try InvoiceRecords.invoice(idOrNumber: invoice, on: $0) }
                guard let found else {
                    await pool.close()
                    throw CommandFailure("no invoice \(invoice) (give its id or number, e.g. INV-2026-000123)")
                }
                guard found.stripe?.status == "failed" else {
                    await pool.close()
                    throw CommandFailure(
                        "invoice \(found.number) has no failed Stripe push to retry (its Stripe state: \(found.stripe?.status ?? "not sent to Stripe")); "
                            + "`invoicer stripe list --failed` lists the failed ones")
                }
                only = found.id.uuidString.lowercased()
            }
            let due = try await StripeSyncState.retryFailed(invoice: only, on: pool)
            print("\(due) invoice(s) due for Stripe again")
            await pool.close()
        }
    }

    static func pool() throws -> PostgresPool {
        var logger = Logger(label: "invoicer.stripe")
        logger.logLevel = .error
        // Only the database is needed here.
        let url = try ConfigurationReader().string(.databaseURL)
        return PostgresPool(configuration: try PostgresConfiguration(url: url), size: 1, logger: logger)
    }
}

extension InvoicerConfiguration: ServerConfiguration {}

/// What `invoicer bill` does before it follows the run: plan it (one command per due
/// invoice, written to the outbox with the run) and send the commands.
enum BillingRunStarter {
    /// Plans the run at `asOf` for `tenants` (every tenant when empty).
    static func plan(asOf: Date, tenants: [UUID], configuration: InvoicerConfiguration, pool: PostgresPool) async throws -> BillingRunPlanner.Plan {
        do {
            return try await pool.withTransaction { connection in
                try BillingRunPlanner.plan(
                    asOf: asOf, grace: Double(configuration.graceSeconds), tenants: tenants.isEmpty ? nil : tenants, on: connection)
            }
        } catch let unknown as UnknownTenant {
            throw CommandFailure(
                "no tenant \(unknown.ids.map(\.lowercasedText).joined(separator: ", ")); GET /v1/tenants/{id} shows one, nothing was planned")
        }
    }

    /// Publishes what the outbox holds (the run's commands among it) with confirms.
    static func send(_ configuration: InvoicerConfiguration, pool: PostgresPool, logger: Logger) async throws {
        let publisher = ConfirmedPublisher(
            configuration: try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-invoicer-bill"), logger: logger)
        do {
            _ = try await pool.withConnection { try await OutboxRelay(publisher: publisher, logger: logger).drain($0) }
            await publisher.close()
        } catch {
            await publisher.close()
            throw error
        }
    }

}
