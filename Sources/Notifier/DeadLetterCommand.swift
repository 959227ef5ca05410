import ArgumentParser
import Foundation
import Logging
import Notifications
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// `notifier dlq`: billing events whose notifications could not all be delivered, parked
/// in `QUEUE.parked` with the reason, and putting them back once the cause is fixed.
/// A replayed event sends only what had not gone out: sent notifications are recorded.
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "List, show, replay or purge parked billing events (undelivered emails and webhooks).",
        discussion: ConfigurationReport.helpText([.amqpURL, .databaseURL, NotifierConfiguration.queue]),
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    struct Options: ParsableArguments {
        @Option(help: "The work queue (default: $NOTIFIER_QUEUE or notifier.events).") var queue: String?

        func workQueue() throws -> String { try queue ?? ConfigurationReader().string(NotifierConfiguration.queue) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "How many are parked, then the oldest with their reasons.")
        @OptionGroup var options: Options
        @Option(help: "How many to show.") var limit = 20

        func validate() throws {
            guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        }

        func run() async throws {
            try await ParkingLot.Session.with(process: "notifier", queue: try options.workQueue(), retry: .notifications) { parked in
                print("parked events in \(parked.lot.name): \(try await parked.lot.count(on: parked.channel))")
                for message in try await parked.lot.peek(limit: limit, logger: parked.logger) {
                    let event = try? BillingEvent.decode(message.body)
                    print(
                        TerminalText.safe(
                            "  \(message.messageID ?? "-")  \(event?.type ?? "unreadable")  tenant \(event.map { "\($0.tenantID)" } ?? "-")"))
                    print(TerminalText.safe("    \(message.reason)"))
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One parked event, whole, with each of its deliveries (its id from `list`).")
        @OptionGroup var options: Options
        @Argument(help: "The event's id (its message id).") var id: String

        func run() async throws {
            try await ParkingLot.Session.with(process: "notifier", queue: try options.workQueue(), retry: .notifications) { parked in
                guard
                    let message = try await parked.lot.peek(limit: ParkingLot.maximumPeek, logger: parked.logger).first(where: { $0.messageID == id })
                else {
                    throw CommandFailure("no parked event \(id); `notifier dlq list` shows them")
                }
                print(TerminalText.safe("reason: \(message.reason)\nbody: \(String(decoding: message.body, as: UTF8.self))\ndeliveries:"))
                for delivery in try await NotificationRecords.deliveries(ofEvent: id, on: parked.database) {
                    print(
                        "  \(delivery.channel) \(delivery.shownRecipient): \(delivery.status) after \(delivery.attempts) attempt(s), "
                            + "code \(delivery.responseCode.map(String.init) ?? "-") \(delivery.lastError ?? "")")
                }
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put parked events back on the work queue (every one, or those --id names); what was already sent is not sent again.",
            discussion: "Fix the cause first (the receiver, the endpoint's URL, the mail server): what still fails is retried, then parked again.")
        @OptionGroup var options: Options
        @Option(name: .customLong("id"), help: "Only this parked event (its id from `list`; repeatable).") var ids: [String] = []

        func run() async throws {
            try await ParkingLot.Session.with(process: "notifier", queue: try options.workQueue(), retry: .notifications) { parked in
                print(
                    "replayed \(try await parked.lot.replay(only: ids.isEmpty ? nil : Set(ids), on: parked.channel, publisher: parked.publisher)) parked event(s)"
                )
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete parked events for good: every one, or those --id names (needs --yes).")
        @OptionGroup var options: Options
        @Option(name: .customLong("id"), help: "Only this parked event (its id from `list`; repeatable).") var ids: [String] = []
        @Flag(help: "Confirm: their undelivered notifications will never be sent.") var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("purge drops notifications that were never delivered; add --yes if that is what you want") }
        }

        func run() async throws {
            try await ParkingLot.Session.with(process: "notifier", queue: try options.workQueue(), retry: .notifications) { parked in
                print(
                    "purged \(try await parked.lot.purge(only: ids.isEmpty ? nil : Set(ids), on: parked.channel, publisher: parked.publisher)) parked event(s)"
                )
            }
        }
    }
}
