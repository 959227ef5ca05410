import ArgumentParser
import CivilTime
import Foundation
import Logging
import PostgresClient
import TallyRuntime

/// `aggregator partitions`: the monthly partitions of `usage_events`, and detaching
/// one for archiving once no duplicate of its events can arrive any more.
struct PartitionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions",
        abstract: "List the monthly usage_events partitions, or detach one for archiving.",
        discussion: """
            A month may be detached once it ended more than 97 days ago: workers refuse events older \
            than 90 days (SPEC §3), so no event of it — and no duplicate — can arrive any more; the 7 \
            days are a margin for messages still in retry queues. Rollups stay; invoice the month first.
            \(ConfigurationReport.helpText([.databaseURL]))
            """,
        subcommands: [List.self, Detach.self])

    /// How long after a month's end its events may still arrive (the 90-day age limit plus margin).
    static let dedupWindowDays = 97

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each partition: month, rows (estimate), size, detachable.")

        func run() async throws {
            let pool = try PartitionCommand.pool()
            let rows = try await pool.query(
                """
                SELECT c.relname, to_char(to_date(substr(c.relname, 14), 'YYYY_MM'), 'YYYY-MM'), c.reltuples::bigint,
                       pg_size_pretty(pg_total_relation_size(c.oid)),
                       (to_date(substr(c.relname, 14), 'YYYY_MM') + interval '1 month' + make_interval(days => $1)) < $2
                  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'usage_events'::regclass ORDER BY c.relname
                """, [PartitionCommand.dedupWindowDays, TallyClock.now()])
            for row in rows {
                let rowsEstimate = max(0, Int(row.text(2) ?? "0") ?? 0)
                print(
                    "\(row.text(1) ?? "?")  \(row.text(0) ?? "")  ~\(rowsEstimate) rows  \(row.text(3) ?? "")  "
                        + (row.text(4) == "t" ? "detachable" : "inside the dedup window"))
            }
            await pool.close()
        }
    }

    struct Detach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Detach one month's partition (it stays as a table to dump and drop).")
        @Argument(help: "The month, YYYY-MM.") var month: String

        func validate() throws {
            guard month.range(of: #"^[0-9]{4}-(0[1-9]|1[0-2])$"#, options: .regularExpression) != nil else {
                throw ValidationError("the month must be YYYY-MM, e.g. 2026-07")
            }
        }

        func run() async throws {
            let pool = try PartitionCommand.pool()
            let table = "usage_events_" + month.replacingOccurrences(of: "-", with: "_")
            let state = try await pool.query(
                """
                SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'usage_events'::regclass AND inhrelid = to_regclass($1)),
                       (to_date($2, 'YYYY-MM') + interval '1 month' + make_interval(days => $3)) < $4
                """, [table, month, PartitionCommand.dedupWindowDays, TallyClock.now()])[0]
            guard state.text(0) == "t" else {
                await pool.close()
                throw ValidationError("\(table) is not an attached partition; `aggregator partitions list` shows them")
            }
            guard state.text(1) == "t" else {
                await pool.close()
                throw ValidationError(
                    "\(month) ended less than \(PartitionCommand.dedupWindowDays) days ago: its events (or duplicates) can still arrive")
            }
            // The name was checked against the catalog above; identifiers cannot be parameters.
            try await pool.query("ALTER TABLE usage_events DETACH PARTITION \(table) CONCURRENTLY")
            await pool.close()
            print("detached \(table); archive it (pg_dump -t \(table)) and then DROP TABLE \(table)")
        }
    }

    static func pool() throws -> PostgresPool {
        var logger = Logger(label: "aggregator.partitions")
        logger.logLevel = .error
        return PostgresPool(
            configuration: try PostgresConfiguration(url: try ConfigurationReader().string(.databaseURL)), size: 1, logger: logger)
    }
}
