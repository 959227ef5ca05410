import ArgumentParser
import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
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
                    let deleted = try await context.database.query("DELETE FROM parked_events WHERE replayed_at IS NULL").affectedRows
                    print("purged \(deleted) parked event(s)")
                }
                if kinds.includesMessages {
                    print("purged \(try await context.parkingLot.purge(on: context.channel)) parked message(s)")
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
        let count = try await database.query("SELECT count(*) FROM parked_events WHERE replayed_at IS NULL")[0].decode(0, as: Int.self)
        print("parked events: \(count)")
        let rows = try await database.query(
            """
            SELECT id, to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), coalesce(tenant_id, '-'),
                   coalesce(event_id, '-'), coalesce(code, '-'), reason
              FROM parked_events WHERE replayed_at IS NULL ORDER BY id DESC LIMIT $1
            """, [limit])
        for row in rows {
            print(
                "  #\(row.text(0) ?? "")  \(row.text(1) ?? "")  tenant \(row.text(2) ?? "")  event \(row.text(3) ?? "")  \(row.text(4) ?? ""): \(row.text(5) ?? "")"
            )
        }
    }

    func listMessages(limit: Int) async throws {
        print("parked messages in \(parkingLot.name): \(try await parkingLot.count(on: channel))")
        for message in try await parkingLot.peek(limit: limit, logger: Logger(label: "dlq")) {
            let preview = String(decoding: message.body.prefix(120), as: UTF8.self)
            print("  message \(message.messageID ?? "-")  \(message.body.count) bytes: \(message.reason)\n    \(preview)")
        }
    }

    func showEvent(_ id: Int64) async throws {
        let rows = try await database.query(
            """
            SELECT id, parked_at, tenant_id, event_id, code, field, reason, message_id, replayed_at, payload
              FROM parked_events WHERE id = $1
            """, [id])
        guard let row = rows.first else { throw ValidationError("no parked event #\(id); `aggregator dlq list` shows them") }
        for (index, column) in row.columns.enumerated() {
            print("\(column): \(row.text(index) ?? "-")")
        }
    }

    /// Publishes open parked events back to the work queue, 1000 per message, and
    /// marks them replayed once the broker confirmed.
    func replayEvents(ids: [Int64]) async throws -> Int {
        let rows = try await database.query(
            """
            SELECT id, payload FROM parked_events
             WHERE replayed_at IS NULL AND (cardinality($1::bigint[]) = 0 OR id = ANY($1::bigint[]))
             ORDER BY id
            """, [PostgresTextArray(ids.map(String.init))])
        var replayed = 0
        for chunk in stride(from: 0, to: rows.count, by: 1000).map({ Array(rows[$0..<min($0 + 1000, rows.count)]) }) {
            let body = "[" + chunk.map { $0.text(1) ?? "null" }.joined(separator: ",") + "]"
            try await publisher.publish([usageMessage(Array(body.utf8), messageID: "replay-" + EventID.make())])
            let chunkIDs = PostgresTextArray(chunk.compactMap { $0.text(0) })
            try await database.query("UPDATE parked_events SET replayed_at = now() WHERE id = ANY($1::bigint[])", [chunkIDs])
            replayed += chunk.count
        }
        return replayed
    }

    /// Moves every message of the parking-lot queue back to the work queue.
    func replayMessages() async throws -> Int {
        try await parkingLot.replayAll(on: channel, publisher: publisher)
    }

    private func usageMessage(_ body: [UInt8], messageID: String) -> OutgoingMessage {
        OutgoingMessage(
            exchange: "", routingKey: queue, body: body,
            properties: AMQPProperties(
                contentType: "application/json", messageID: messageID, persistent: true,
                timestamp: Int64(Date().timeIntervalSince1970), headers: [HeaderName.schema: .string("usage.v1")]),
            mandatory: true)
    }
}
