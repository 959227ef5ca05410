import ArgumentParser
import Foundation
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime

/// `invoicer dlq`: invoice.generate commands that failed every attempt, parked in
/// `invoicer.commands.parked` with the reason (their billing-run items are `failed`), and
/// putting them back once the cause is fixed. A replayed command that finds its invoice
/// issued acks without issuing another; `invoicer bill --rerun RUN_ID` is the other way back.
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "List, show, replay or purge parked invoice.generate commands (invoices a billing run could not issue).",
        discussion: ConfigurationReport.helpText([.amqpURL, .databaseURL]),
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "How many are parked, then the oldest with their reasons.")
        @Option(help: "How many to show.") var limit = 20

        func validate() throws {
            guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        }

        func run() async throws {
            try await ParkingLot.Session.with(process: "invoicer", queue: QueueName.invoicerCommands, retry: .standard) { parked in
                print("parked commands in \(parked.lot.name): \(try await parked.lot.count(on: parked.channel))")
                for message in try await parked.lot.peek(limit: limit, logger: parked.logger) {
                    let command = try? InvoiceGenerateCommand.decode(message.body)
                    let what = command.map {
                        "run \($0.billingRunID.uuidString.lowercased())  subscription \($0.subscriptionID.uuidString.lowercased())  period \($0.periodIndex)"
                    }
                    print(TerminalText.safe("  \(message.messageID ?? "-")  \(what ?? "unreadable command")"))
                    print(TerminalText.safe("    \(message.reason)"))
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One parked command, whole, with its billing-run item (its id from `list`).")
        @Argument(help: "The command's message id.") var id: String

        func run() async throws {
            try await ParkingLot.Session.with(process: "invoicer", queue: QueueName.invoicerCommands, retry: .standard) { parked in
                guard
                    let message = try await parked.lot.peek(limit: ParkingLot.maximumPeek, logger: parked.logger).first(where: { $0.messageID == id })
                else {
                    throw CommandFailure("no parked command \(id); `invoicer dlq list` shows them")
                }
                print(TerminalText.safe("reason: \(message.reason)\nbody: \(String(decoding: message.body, as: UTF8.self))"))
                guard let command = try? InvoiceGenerateCommand.decode(message.body) else { return }
                let item = try await parked.database.withTransaction {
                    try BillingRunStatus.item(
                        run: command.billingRunID, subscription: command.subscriptionID, periodIndex: command.periodIndex, on: $0)
                }
                if let item {
                    print(
                        "billing-run item: \(item.status)  invoice \(item.invoiceID.map { $0.uuidString.lowercased() } ?? "-")  \(item.error ?? "")")
                }
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Put parked commands back on invoicer.commands (every one, or those --id names); an invoice already issued is not issued again.",
            discussion: "Fix the cause first: what still fails is retried, then parked again.")
        @Option(name: .customLong("id"), help: "Only this parked command (its message id from `list`; repeatable).") var ids: [String] = []

        func run() async throws {
            try await ParkingLot.Session.with(process: "invoicer", queue: QueueName.invoicerCommands, retry: .standard) { parked in
                print(
                    "replayed \(try await parked.lot.replay(only: ids.isEmpty ? nil : Set(ids), on: parked.channel, publisher: parked.publisher)) parked command(s)"
                )
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete parked commands for good: every one, or those --id names (needs --yes).")
        @Option(name: .customLong("id"), help: "Only this parked command (its message id from `list`; repeatable).") var ids: [String] = []
        @Flag(help: "Confirm: their invoices stay unissued until a billing run plans them again (invoicer bill --rerun).") var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("purge drops invoices a run could not issue; add --yes if that is what you want") }
        }

        func run() async throws {
            try await ParkingLot.Session.with(process: "invoicer", queue: QueueName.invoicerCommands, retry: .standard) { parked in
                print(
                    "purged \(try await parked.lot.purge(only: ids.isEmpty ? nil : Set(ids), on: parked.channel, publisher: parked.publisher)) parked command(s)"
                )
            }
        }
    }
}
