import ArgumentParser
import CivilTime
import Foundation
import Logging
import PostgresClient
import TallyRuntime
import TallyStore

/// `aggregator partitions`: the monthly partitions of `usage_events`, and detaching
/// one for archiving once no duplicate of its events can arrive any more.
struct PartitionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions",
        abstract: "List the monthly usage_events partitions, or detach one for archiving.",
        discussion: """
            A month may be detached once it ended more than 97 days ago: workers refuse events more \
            than 90 days older than their acceptance (SPEC §3) and any older than 97 days (7 days for \
            messages in spools and retry queues), so no event of it — and no duplicate — can arrive \
            any more. Rollups stay; invoice the month first.
            \(ConfigurationReport.helpText([.databaseURL]))
            """,
        subcommands: [List.self, Detach.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each partition: month, rows (estimate), size, detachable.")

        func run() async throws {
            let pool = try PartitionCommand.pool()
            for partition in try await UsagePartitions.list(now: TallyClock.now(), on: pool) {
                print(
                    "\(partition.month)  \(partition.table)  ~\(partition.rowsEstimate) rows  \(partition.size)  "
                        + (partition.detachable ? "detachable" : "inside the dedup window"))
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
            let table = UsagePartitions.table(of: month)
            let state = try await UsagePartitions.state(of: month, now: TallyClock.now(), on: pool)
            guard state.attached else {
                await pool.close()
                throw CommandFailure("\(table) is not an attached partition; `aggregator partitions list` shows them")
            }
            guard state.detachable else {
                await pool.close()
                throw CommandFailure(
                    "\(month) is inside the dedup window (it has not ended, or ended less than \(UsagePartitions.dedupWindowDays) days ago): "
                        + "its events (or duplicates) can still arrive")
            }
            try await UsagePartitions.detach(month, on: pool)
            await pool.close()
            print("detached \(table); archive it (pg_dump -t \(table)) and then DROP TABLE \(table)")  // shown, not run
        }
    }

    static func pool() throws -> PostgresPool {
        var logger = Logger(label: "aggregator.partitions")
        logger.logLevel = .error
        return PostgresPool(
            configuration: try PostgresConfiguration(url: try ConfigurationReader().string(.databaseURL)), size: 1, logger: logger)
    }
}
