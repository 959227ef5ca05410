import ArgumentParser
import CurlClient
import Foundation
import Logging
import PostgresClient
import TallyRuntime
import TallyStore

/// `producer backfill FILE`: usage from an NDJSON file (an export, a replay of a lost
/// feed), with a dedup report first: which events Tally has counted already (skipped),
/// which repeat within the file (sent once), which cannot be read, and which are new (sent
/// through the ingest service, as `publish` does). Sending everything would be just as
/// exact (the Aggregator deduplicates); the report says what the backfill changes.
struct BackfillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Send the events of an NDJSON file Tally has not counted yet, after a dedup report (--dry-run: the report only).",
        discussion: ConfigurationReport.helpText([PublishCommand.ingestURL, ProducerConfiguration.adminToken, .databaseURL])
            + "\n\nEvery line must name its tenant_id (the admin token sends for any tenant). Exit status: 0 when every new"
            + " event was accepted and every line could be read, 1 otherwise."
    )

    @Argument(help: "NDJSON file of usage events (one per line).") var file: String
    @Flag(help: "Print the dedup report and send nothing.") var dryRun = false
    @Option(help: "Events per request.") var batchSize = 1000
    @Option(help: "Attempts per batch when the service is unavailable (503) or unreachable.") var attempts = 5

    func validate() throws {
        // The ingest takes at most 10,000 events a request: more was refused whole (413), every batch.
        guard (1...IngestBody.maximumEvents).contains(batchSize) else {
            throw ValidationError("--batch-size must be 1 to 10000 (the most events one request may carry)")
        }
        guard (1...100).contains(attempts) else { throw ValidationError("--attempts must be 1 to 100") }
        fclose(try PublishCommand.open(file))
    }

    /// What the file holds, line by line.
    struct Report {
        var lines = 0
        var new: [(line: Int, text: String)] = []
        var counted = 0
        var repeated = 0
        var unreadable: [(line: Int, why: String)] = []
    }

    func run() async throws {
        let reader = ConfigurationReader()
        let input = try PublishCommand.open(file)
        var logger = Logger(label: "producer.backfill")
        logger.logLevel = .error
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: try reader.string(.databaseURL)), size: 1, logger: logger)
        let report: Report
        do {
            report = try await Self.read(input, pool: pool)
        } catch {
            fclose(input)
            await pool.close()
            throw error
        }
        fclose(input)
        await pool.close()
        print("backfill report for \(file): \(report.lines) event line(s)")
        for (label, count) in [
            ("new, to send", report.new.count), ("counted already (skipped)", report.counted),
            ("repeated in the file (sent once)", report.repeated), ("unreadable", report.unreadable.count),
        ] {
            print("  " + (label + ":").padding(toLength: 36, withPad: " ", startingAt: 0) + "\(count)")
        }
        for (line, why) in report.unreadable.prefix(20) { print("    line \(line): \(why)") }
        if report.unreadable.count > 20 { print("    … and \(report.unreadable.count - 20) more") }
        guard !dryRun else {
            print("dry run: nothing sent")
            // A pre-flight check: unreadable lines fail it, as they fail the real run.
            if !report.unreadable.isEmpty { throw ExitCode(1) }
            return
        }
        let endpoint = try reader.string(PublishCommand.ingestURL) + "/v1/events"
        let sender = IngestSender(
            endpoint: endpoint, token: try reader.string(ProducerConfiguration.adminToken), client: try HTTPClient(), attempts: attempts)
        var progress = PublishProgress()
        for start in stride(from: 0, to: report.new.count, by: batchSize) {
            let batch = report.new[start..<min(start + batchSize, report.new.count)]
            // Each batch's lines are reported by their first line number in the file.
            try await sender.send(batch.map(\.text), firstLine: batch.first!.line, progress: &progress)
        }
        progress.finish()
        if progress.refused + progress.notSent > 0 || !report.unreadable.isEmpty { throw ExitCode(1) }
    }

    /// Reads every line; looks up 1,000 keys at a time in the dedup table.
    static func read(_ input: UnsafeMutablePointer<FILE>, pool: PostgresPool) async throws -> Report {
        var report = Report()
        var seen = Set<CountedEventIDs.Key>()
        var pending: [(key: CountedEventIDs.Key, line: Int, text: String)] = []
        func flush() async throws {
            let keys = pending.map(\.key)
            let counted = try await pool.withTransaction { try CountedEventIDs.counted(keys, on: $0) }
            for entry in pending {
                if counted.contains(entry.key) { report.counted += 1 } else { report.new.append((entry.line, entry.text)) }
            }
            pending.removeAll(keepingCapacity: true)
        }
        var number = 0
        while let line = PublishCommand.readLine(input) {
            number += 1
            if line.allSatisfy(\.isWhitespace) { continue }
            report.lines += 1
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                report.unreadable.append((number, "not a JSON object"))
                continue
            }
            guard let id = object["id"] as? String, !id.isEmpty else {
                report.unreadable.append((number, "no \"id\" (the event's idempotency key)"))
                continue
            }
            guard let tenant = (object["tenant_id"] as? String).flatMap(UUID.init(uuidString:)) else {
                report.unreadable.append(
                    (
                        number,
                        object["tenant_id"] == nil
                            ? "no \"tenant_id\" (a backfill names each event's tenant)" : "\"tenant_id\" is not a tenant id (a UUID)"
                    ))
                continue
            }
            let key = CountedEventIDs.Key(tenant: tenant, id: id)
            guard seen.insert(key).inserted else {
                report.repeated += 1
                continue
            }
            pending.append((key, number, line))
            if pending.count == 1000 { try await flush() }
        }
        if !pending.isEmpty { try await flush() }
        return report
    }
}
