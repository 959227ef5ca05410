import Foundation
import TallyTestSupport
import Testing

/// Run by the outage phase of `./ops/local.sh test` (its name matches `OutageTests`): it
/// stops the real PostgreSQL under a running `aggregator` binary.
@Suite("Aggregator requeue OutageTests", .serialized, .enabled(if: TestEnvironment.disruptive))
struct AggregatorRequeueOutageTests {
    static let messages = 400
    static let eventsPerMessage = 1000

    @Test(
        "PostgreSQL stopped while a backlog is fed to the Aggregator: the batch, its bodies dropped, is requeued, comes back and every event is counted once"
    )
    func requeuedOnDatabaseOutage() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(50)
        let time = TestClock.now().addingTimeInterval(-60)
        // A backlog before the Aggregator starts: its batches are fed as they arrive, each
        // message's body dropped once decoded, so a failed batch can only be put back.
        let bodies = (0..<Self.messages).map { message in
            "["
                + (0..<Self.eventsPerMessage).map { index in
                    let event = message * Self.eventsPerMessage + index
                    return usageEventJSON(id: "requeue-\(event)", tenant: tenants[event % tenants.count], time: time)
                }.joined(separator: ",") + "]"
        }
        try await harness.publish(bodies)
        let aggregator = try harness.startAggregator(consumers: 1)
        let port = try await aggregator.listeningPort()
        try await harness.waitUntil("the first batch stored") { try await harness.storedCounts(tenants).values.reduce(0, +) > 0 }
        try await TestEnvironment.ops("stop", "postgres")
        try await Task.sleep(for: .seconds(1))  // how long the outage lasts, not a wait for anything
        try await TestEnvironment.ops("start", "postgres")

        let perTenant = Self.messages * Self.eventsPerMessage / tenants.count
        let expected = Dictionary(uniqueKeysWithValues: tenants.map { ($0, perTenant) })
        try await harness.waitUntil("every event stored and the queue drained, none held unacked") {
            guard try await harness.storedCounts(tenants) == expected, try await harness.depth() == 0 else { return false }
            return try await BrokerQueues.messages(in: harness.queue) == 0
        }
        let metrics = try await AggregatorHarness.metrics(port: port)
        #expect((metrics["tally_aggregator_messages_requeued_total"] ?? 0) >= 1, "the batch in flight was requeued: \(metrics)")
        #expect(await aggregator.stop() == 0)
        #expect(try await harness.storedCounts(tenants) == expected)
        #expect(try await harness.rollupMismatches(tenants) == 0)
        #expect(try await harness.depth(".parked") == 0)
        try await harness.tearDown()
    }
}
