import Foundation
import PostgresClient
import Synchronization
import TallyTestSupport
import Testing

/// Exactly-once counting under crashes: the real `aggregator` binaries consume a
/// private queue while the test SIGKILLs and restarts them (and, in the outage
/// phase, restarts PostgreSQL). Afterwards every tenant holds exactly its unique
/// events and the rollups equal a straight aggregation of them.
enum AggregatorExactness {
    /// With `outage`, PostgreSQL is restarted in the middle and RabbitMQ once everything is published.
    static func run(outage: Bool, seed: UInt64) async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(20)
        let workload = UsageWorkload(
            tenants: tenants, unique: 180_000, duplicatesInside: 10_000, duplicatesResent: 10_000, seed: seed)
        let processes = ProcessList([
            try harness.startAggregator(consumers: 4, name: "a0"), try harness.startAggregator(consumers: 4, name: "b0"),
        ])
        let published = PublishedFlag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // In four parts (the last holds the resent duplicates) while the killing goes on.
                let part = (workload.messages.count + 3) / 4
                for start in stride(from: 0, to: workload.messages.count, by: part) {
                    try await harness.publish(Array(workload.messages[start..<min(start + part, workload.messages.count)]))
                    try await Task.sleep(for: .seconds(1))
                }
                published.value.store(true, ordering: .releasing)
            }
            group.addTask {
                // Chaos, paced in seconds: kill one process at a time and start it again.
                var round = 0
                while !published.value.load(ordering: .acquiring) || round < 6 {
                    try await Task.sleep(for: .milliseconds(900))
                    round += 1
                    let slot = round % 2
                    try processes.list.withLock { list in
                        list[slot].kill(SIGKILL)
                        list[slot] = try harness.startAggregator(consumers: 4, name: "\(slot)-\(round)")
                    }
                    if outage, round == 3 {
                        try await TestEnvironment.ops("stop", "postgres")
                        try await Task.sleep(for: .seconds(1))
                        try await TestEnvironment.ops("start", "postgres")
                    }
                }
            }
            try await group.waitForAll()
        }
        if outage {
            try await TestEnvironment.ops("stop", "rabbitmq")
            try await TestEnvironment.ops("start", "rabbitmq")
        }
        let live = outage ? try await harness.reconnected() : harness
        var expected = workload.expected
        if outage {
            // Usage after the broker restart reaches the reconnected aggregators too.
            let time = TestClock.now().addingTimeInterval(-60)
            try await live.publish([
                "[" + (0..<10).map { usageEventJSON(id: "after-restart-\($0)", tenant: tenants[0], time: time) }.joined(separator: ",") + "]"
            ])
            expected[tenants[0], default: 0] += 10
        }
        try await live.waitUntil("every unique event stored and the queue drained") { [expected] in
            let counts = try await live.storedCounts(tenants)
            let depth = try await live.depth()
            guard counts == expected, depth == 0 else { return false }
            // Drained means none held unacknowledged either (a message of resent
            // duplicates only may still be in a consumer's hands; on a stop it goes back).
            return try await BrokerQueues.messages(in: live.queue) == 0
        }
        // Graceful stop: both finish what they hold and exit 0.
        for process in processes.list.withLock({ $0 }) { #expect(await process.stop() == 0) }
        #expect(try await live.storedCounts(tenants) == expected)
        #expect(try await live.rollupMismatches(tenants) == 0)
        #expect(try await live.depth() == 0)
        #expect(try await live.depth(".parked") == 0)
        let parked = try await live.database.query(
            "SELECT count(*) FROM parked_events WHERE tenant_id = ANY($1::text[])",
            ["{" + tenants.map { $0.uuidString.lowercased() }.joined(separator: ",") + "}"])[0].decode(0, as: Int.self)
        #expect(parked == 0)
        try await live.tearDown()
    }
}

/// The aggregator processes of one test, replaced as they are killed.
final class ProcessList: Sendable {
    let list: Mutex<[ChildProcess]>
    init(_ processes: [ChildProcess]) { list = Mutex(processes) }
}

final class PublishedFlag: Sendable {
    let value = Atomic(false)
}

/// Heavy (200k events, 8 consumers): run in the serial phase, where it cannot starve the others.
@Suite("Aggregator exactness SerialTests", .enabled(if: TestEnvironment.disruptive))
struct AggregatorExactnessSerialTests {
    @Test("200k events, 10% duplicates, two aggregators × 4 consumers SIGKILLed in turn: counts and rollups exact")
    func killedRepeatedly() async throws {
        try await AggregatorExactness.run(outage: false, seed: 0x5EED_0001)
    }
}

/// Run by the outage phase of `./ops/local.sh test` (its name matches `OutageTests`).
@Suite("Aggregator OutageTests", .serialized, .enabled(if: TestEnvironment.disruptive))
struct AggregatorOutageTests {
    @Test("the same with PostgreSQL restarted in the middle and RabbitMQ at the end: nothing lost, nothing counted twice")
    func killedAndDatabaseRestarted() async throws {
        try await AggregatorExactness.run(outage: true, seed: 0x5EED_0002)
    }
}
