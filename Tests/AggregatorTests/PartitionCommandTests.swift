import Foundation
import PostgresClient
import TallyTestSupport
import Testing

@Suite("Aggregator: usage partitions")
struct PartitionCommandTests {
    func partitions(_ arguments: String...) async throws -> (status: Int32, output: String, errors: String) {
        try await TestEnvironment.run(
            AggregatorHarness.binary, ["partitions"] + arguments, environment: ["DATABASE_URL": TestEnvironment.databaseURL])
    }

    @Test("a month past the dedup window is detached for archiving; the current month is refused")
    func detachOldMonth() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: AggregatorHarness.logger)
        try await pool.query("DROP TABLE IF EXISTS usage_events_2024_01")  // left by an interrupted run
        try await pool.query("SELECT tally_ensure_usage_partitions('2024-01-01', '2024-01-01')")
        let current = String(ISO8601DateFormatter().string(from: TestClock.now()).prefix(7))
        let listing = try await partitions("list")
        #expect(listing.status == 0)
        #expect(listing.output.contains("2024-01  usage_events_2024_01"))
        #expect(listing.output.split(separator: "\n").contains { $0.hasPrefix("2024-01") && $0.hasSuffix("detachable") })
        #expect(listing.output.split(separator: "\n").contains { $0.hasPrefix(current) && $0.hasSuffix("inside the dedup window") })
        let refused = try await partitions("detach", current)
        #expect(refused.status != 0)
        #expect(refused.errors.contains("can still arrive"))
        let detached = try await partitions("detach", "2024-01")
        #expect(detached.status == 0)
        #expect(detached.output.contains("detached usage_events_2024_01"))
        #expect(!(try await partitions("list").output.contains("usage_events_2024_01")))
        try await pool.query("DROP TABLE usage_events_2024_01")
        await pool.close()
    }
}
