import ArgumentParser
import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyRuntime

/// `producer spool`: looking after the producer's disk spool.
struct SpoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool",
        abstract: "Look after the disk spool (its dead letters).",
        subcommands: [DeadLetterCommand.self])
}

/// `producer spool dead-letter list|replay|purge`: the spooled usage batches the broker
/// kept refusing (or that could not be read), set aside in `dead-letter.ndjson` beside
/// the spool's segments so the rest could drain.
///
/// Safe while `producer serve` runs on the same spool: the file is shared under a lock,
/// and replay publishes straight to RabbitMQ (it never touches the spool's segments).
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letter",
        abstract: "List, replay or purge usage batches set aside from the spool.",
        discussion: ConfigurationReport.helpText([ProducerConfiguration.spoolDirectory, .amqpURL]),
        subcommands: [List.self, Replay.self, Purge.self])

    struct Options: ParsableArguments {
        @Option(help: "The spool folder (default: $TALLY_SPOOL_DIR or .local/spool/producer).") var spool: String?

        /// The spool's dead-letter file; a folder that is not there is a mistyped path (reading
        /// created it and said "0 dead letters").
        func file() throws -> DeadLetterFile {
            let directory = spool ?? ConfigurationReader().optionalString(ProducerConfiguration.spoolDirectory) ?? ".local/spool/producer"
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandFailure("no spool folder \(directory): give the producer's TALLY_SPOOL_DIR with --spool")
            }
            return DeadLetterFile(spoolDirectory: directory)
        }

        /// Refuses ids that name no dead letter of `letters` (a typo did nothing and exited 0).
        static func refuseUnknown(_ ids: [String], in letters: [DeadLetter]) throws {
            let unknown = Set(ids).subtracting(letters.map(\.id)).sorted()
            guard unknown.isEmpty else {
                throw CommandFailure(
                    "no dead letter \(unknown.joined(separator: ", ")); `producer spool dead-letter list` shows them (nothing was done)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every dead letter: id, when, attempts, why, and what it holds.")
        @OptionGroup var options: Options

        func run() async throws {
            let file = try options.file()
            let letters = try file.read()
            print(TerminalText.safe("\(letters.count) dead letter(s) in \(file.path)"))
            let times = ISO8601DateFormatter()
            for letter in letters {
                print(
                    TerminalText.safe(
                        "\(letter.id)  \(times.string(from: letter.time))  attempts \(letter.attempts)  \(DeadLetterCommand.summary(letter))  reason: \(letter.reason)"
                    ))
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish dead letters to RabbitMQ again (with confirms); the confirmed ones leave the file.",
            discussion: "Fix the cause first (e.g. bind the usage queue). Event ids are kept, so nothing counts twice. "
                + "What the broker refuses again stays, with its new reason printed.")
        @OptionGroup var options: Options
        @Option(name: .customLong("id"), help: "Only these dead letters (repeatable; default: all).") var ids: [String] = []

        func run() async throws {
            let file = try options.file()
            let all = try file.read()
            try Options.refuseUnknown(ids, in: all)
            let letters = all.filter { ids.isEmpty || ids.contains($0.id) }
            let batches = letters.map { letter in (letter, UsageBatch(spoolRecord: letter.record)) }
            for case (let letter, nil) in batches {
                print(TerminalText.safe("\(letter.id): not a usage batch; it cannot be replayed (purge it with --id \(letter.id) once inspected)"))
            }
            let replayable = batches.compactMap { letter, batch in batch.map { (letter, $0) } }
            guard !replayable.isEmpty else {
                print("nothing to replay")
                // Unreadable letters stay: not done.
                if !letters.isEmpty { throw ExitCode(1) }
                return
            }
            let connection = try await AMQPConnection.connect(
                configuration: try AMQPConfiguration(url: try ConfigurationReader().string(.amqpURL), connectionName: "tally-producer-replay"),
                logger: Logger(label: "producer.spool"))
            let outcomes: [PublishOutcome]
            do {
                try await connection.openChannel(1, confirms: true)
                outcomes = try await connection.publish(replayable.map(\.1.message))
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
            var confirmed: Set<String> = []
            for ((letter, _), outcome) in zip(replayable, outcomes) {
                if outcome == .confirmed {
                    confirmed.insert(letter.id)
                } else {
                    print(TerminalText.safe("\(letter.id): refused again (\(outcome)); it stays"))
                }
            }
            try file.remove(ids: confirmed)
            print("replayed \(confirmed.count) of \(replayable.count) dead letter(s)")
            if confirmed.count < letters.count { throw ExitCode(1) }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good (needs --yes).")
        @OptionGroup var options: Options
        @Option(name: .customLong("id"), help: "Only these dead letters (repeatable; default: all).") var ids: [String] = []
        @Flag(help: "Confirm: this deletes usage that was never delivered.") var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("purge deletes usage that was never delivered; add --yes if that is what you want") }
        }

        func run() async throws {
            let file = try options.file()
            if !ids.isEmpty { try Options.refuseUnknown(ids, in: try file.read()) }
            let removed = try file.remove(ids: ids.isEmpty ? nil : Set(ids))
            print("purged \(removed) dead letter(s)")
        }
    }

    /// What a dead letter holds: its message id and event count, or that it is unreadable.
    static func summary(_ letter: DeadLetter) -> String {
        guard let batch = UsageBatch(spoolRecord: letter.record) else { return "unreadable record of \(letter.record.count) bytes" }
        let events = (try? JSONSerialization.jsonObject(with: Data(batch.body)) as? [Any])?.count
        return "message \(batch.messageID), \(events.map { "\($0) event(s)" } ?? "body not JSON"), \(batch.body.count) bytes"
    }
}
