import ArgumentParser
import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
import TallyStore
import UsageEvents

/// `aggregator dlq`: what the Aggregator could not count, and putting it back.
///
/// Two kinds of dead letters: *parked events* (valid messages holding an invalid
/// event, or an event of an unknown tenant) in the `parked_events` table, and
/// *parked messages* (not a usage batch at all, or failed every retry) in the
/// parking-lot queue `QUEUE.parked` with the reason in `x-tally-park-reason`.
/// Replay puts them back on the work queue unchanged, ids and all, so an event that
/// was counted meanwhile is not counted twice.
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "List, show, replay or purge parked usage (events and messages).",
        discussion: ConfigurationReport.helpText([.amqpURL, .databaseURL, AggregatorConfiguration.queue]),
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    struct Options: ParsableArguments {
        @Option(help: "The work queue (default: $AGGREGATOR_QUEUE or aggregator.usage).") var queue: String?
    }

    /// Which dead letters a command acts on; neither flag means both.
    struct Kinds: ParsableArguments {
        @Flag(help: "Parked events (parked_events).") var events = false
        @Flag(help: "Parked messages (the parking-lot queue).") var messages = false

        var includesEvents: Bool { events || !messages }
        var includesMessages: Bool { messages || !events }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counts, then the newest parked events and messages.")
        @OptionGroup var options: Options
        @Option(help: "How many of each to show.") var limit = 20

        func validate() throws {
            guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        }

        func run() async throws {
            try await DeadLetters.with(options) { context in
                try await context.listEvents(limit: limit)
                try await context.listMessages(limit: limit)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One parked event, whole (its id from `list`).")
        @OptionGroup var options: Options
        @Argument(help: "The parked event's id.") var id: Int64

        func run() async throws {
            try await DeadLetters.with(options) { context in
                try await context.showEvent(id)
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put parked events and messages back on the work queue (ids kept: nothing counts twice).",
            discussion:
                "Without --events or --messages, both. Fix the cause first (e.g. create the missing tenant): what is still wrong is parked again.")
        @OptionGroup var options: Options
        @OptionGroup var kinds: Kinds
        @Option(name: .customLong("id"), help: "Only these parked events (repeatable).") var ids: [Int64] = []

        func validate() throws {
            // It was ignored for messages, silently, with exit 0.
            guard ids.isEmpty || !kinds.messages else {
                throw ValidationError(
                    "--id names parked events (the #N of `dlq list`); parked messages are replayed all together: leave out --messages")
            }
        }

        func run() async throws {
            try await DeadLetters.with(options) { context in
                if kinds.includesEvents { print("replayed \(try await context.replayEvents(ids: ids)) parked event(s)") }
                if kinds.includesMessages && ids.isEmpty { print("replayed \(try await context.replayMessages()) parked message(s)") }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete parked events and messages for good (needs --yes).",
            discussion: "Without --events or --messages, both.")
        @OptionGroup var options: Options
        @OptionGroup var kinds: Kinds
        @Flag(help: "Confirm: this deletes usage that was never counted.") var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("purge deletes usage that was never counted; add --yes if that is what you want") }
        }

        func run() async throws {
            try await DeadLetters.with(options) { context in
                if kinds.includesEvents {
                    let deleted = try await ParkedEvents.purgeOpen(on: context.database)
                    print("purged \(deleted) parked event(s)")
                }
                if kinds.includesMessages {
                    print("purged \(try await context.parkingLot.purge(on: context.channel, publisher: context.publisher)) parked message(s)")
                }
            }
        }
    }
}

/// The connections the `dlq` commands share: the worker's parking-lot session, and the
/// `parked_events` table beside it.
struct DeadLetters: Sendable {
    let session: ParkingLot.Session
    var queue: String { session.lot.queue }
    var database: PostgresPool { session.database }
    var channel: AMQPConnection { session.channel }
    var publisher: ConfirmedPublisher { session.publisher }
    var parkingLot: ParkingLot { session.lot }

    /// Opens the connections, runs `body`, and closes them.
    static func with(_ options: DeadLetterCommand.Options, _ body: (DeadLetters) async throws -> Void) async throws {
        let queue = try options.queue ?? ConfigurationReader().string(AggregatorConfiguration.queue)
        try await ParkingLot.Session.with(process: "aggregator", queue: queue, retry: .standard) { session in
            try await body(DeadLetters(session: session))
        }
    }

    func listEvents(limit: Int) async throws {
        print("parked events: \(try await ParkedEvents.openCount(on: database))")
        for event in try await ParkedEvents.newestOpen(limit: limit, on: database) {
            print(
                TerminalText.safe(
                    "  #\(event.id)  \(event.parkedAt)  tenant \(event.tenantID)  event \(event.eventID)  \(event.code): \(event.reason)"))
        }
    }

    func listMessages(limit: Int) async throws {
        print("parked messages in \(parkingLot.name): \(try await parkingLot.count(on: channel))")
        for message in try await parkingLot.peek(limit: limit, logger: Logger(label: "dlq")) {
            let preview = String(decoding: message.body.prefix(120), as: UTF8.self)
            print(TerminalText.safe("  message \(message.messageID ?? "-")  \(message.body.count) bytes: \(message.reason)\n    \(preview)"))
        }
    }

    func showEvent(_ id: Int64) async throws {
        guard let columns = try await ParkedEvents.columns(of: id, on: database) else {
            throw CommandFailure("no parked event #\(id); `aggregator dlq list` shows them")
        }
        for column in columns {
            print(TerminalText.safe("\(column.name): \(column.value ?? "-")"))
        }
    }

    /// Publishes open parked events back to the work queue, 1000 per message, and
    /// marks them replayed once the broker confirmed; a page at a time, with progress on
    /// standard error for a long replay. Named ids that are not open parked events (a
    /// mistyped id, or one replayed already) refuse the whole replay before anything moves.
    /// Events parked as not JSON inside are never replayed (see `ParkedEvents.notJSON`).
    func replayEvents(ids: [Int64]) async throws -> Int {
        let unknown = try await ParkedEvents.notOpen(ids, on: database)
        if !unknown.isEmpty {
            let named = unknown.map { "#\($0.id) (\($0.replayedAt.map { "replayed already at \($0)" } ?? "no such parked event"))" }
            throw CommandFailure("not replaying: \(named.joined(separator: ", ")); `aggregator dlq list` shows the open ones")
        }
        let notJSON = try await ParkedEvents.notReplayable(ids, on: database)
        if !notJSON.isEmpty {
            let named = notJSON.map { "#\($0)" }.joined(separator: ", ")
            throw CommandFailure(
                "not replaying: \(named) \(notJSON.count == 1 ? "is" : "are") not JSON inside (\(ParkedEvents.notJSON)), which no fix makes "
                    + "countable; `aggregator dlq show ID` shows what arrived (for its sender to send again); a replay without --id leaves it")
        }
        let total = ids.isEmpty ? try await ParkedEvents.openCount(on: database) : ids.count
        var replayed = 0
        var after: Int64 = 0
        var reported = 0
        while true {
            let chunk = try await ParkedEvents.openPayloads(ids: ids, after: after, limit: 1000, on: database)
            guard let last = chunk.last else { break }
            // Stamped with when they were accepted, not now: the age limit counts from it, so
            // an event near its 90 days parked for a missing tenant still counts once the tenant
            // exists, and parked again it keeps that time. One message per second of acceptance
            // (a message's timestamp is whole seconds, rounded down: never later than theirs).
            var messages: [OutgoingMessage] = []
            let bySecond = Dictionary(grouping: chunk) { Int64($0.acceptedAt.timeIntervalSince1970.rounded(.down)) }
            for (second, group) in bySecond.sorted(by: { $0.key < $1.key }) {
                let body = "[" + group.map { $0.payload ?? "null" }.joined(separator: ",") + "]"
                messages.append(usageMessage(Array(body.utf8), messageID: "replay-" + EventID.make(), acceptedSecond: second))
            }
            try await publisher.publish(messages)
            try await ParkedEvents.markReplayed(chunk.map(\.id), on: database)
            replayed += chunk.count
            after = last.id
            if replayed - reported >= 50_000 {
                reported = replayed
                FileHandle.standardError.write(Data("replayed \(replayed) of about \(total) parked event(s)…\n".utf8))
            }
        }
        return replayed
    }

    /// Moves every message of the parking-lot queue back to the work queue.
    func replayMessages() async throws -> Int {
        try await parkingLot.replay(on: channel, publisher: publisher)
    }

    private func usageMessage(_ body: [UInt8], messageID: String, acceptedSecond: Int64) -> OutgoingMessage {
        OutgoingMessage(
            exchange: "", routingKey: queue, body: body,
            properties: AMQPProperties(
                contentType: "application/json", messageID: messageID, persistent: true, timestamp: acceptedSecond,
                headers: [HeaderName.schema: .string("usage.v1")]),
            mandatory: true)
    }
}
