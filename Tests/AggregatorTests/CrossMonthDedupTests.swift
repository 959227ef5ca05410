import Foundation
import PostgresClient
import TallyTestSupport
import Testing

/// SPEC §3: an event id is counted once per tenant, whatever time it is re-sent with.
@Suite("Aggregator: dedup across months")
struct CrossMonthDedupTests {
    @Test("an id re-sent with a time in another month counts once — in another batch and within one batch; another tenant's same id counts")
    func resentInAnotherMonth() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(2)
        let (tenant, other) = (tenants[0], tenants[1])
        let now = TestClock.now().addingTimeInterval(-60)
        let lastMonth = now.addingTimeInterval(-40 * 86_400)  // always another UTC month
        let aggregator = try harness.startAggregator(consumers: 2)
        // First sent last month, then re-sent (re-stamped) now, in a later message.
        try await harness.publish(["[\(usageEventJSON(id: "moved", tenant: tenant, quantity: "5", time: lastMonth))]"])
        try await harness.waitUntil("the first copy counted") { try await harness.storedCounts([tenant])[tenant] == 1 }
        try await harness.publish([
            "["
                + [
                    usageEventJSON(id: "moved", tenant: tenant, quantity: "5", time: now),
                    // Both copies of another id in one message, a month apart: the earliest time is kept.
                    usageEventJSON(id: "twice", tenant: tenant, quantity: "2", time: now),
                    usageEventJSON(id: "twice", tenant: tenant, quantity: "2", time: lastMonth),
                    usageEventJSON(id: "moved", tenant: other, quantity: "7", time: now),
                    usageEventJSON(id: "fresh", tenant: tenant, quantity: "1", time: now),
                ].joined(separator: ",") + "]"
        ])
        try await harness.waitUntil("the second message committed") { try await harness.storedCounts([other])[other] == 1 }
        #expect(await aggregator.stop() == 0)
        let rows = try await harness.database.query(
            "SELECT event_id, occurred_at FROM usage_events WHERE tenant_id = $1 ORDER BY event_id", [tenant])
        #expect(rows.map { $0.text(0) } == ["fresh", "moved", "twice"])
        let twice = try #require(rows.last).decode(1, as: Date.self)
        #expect(abs(twice.timeIntervalSince(lastMonth)) < 0.001)
        let total = try await harness.database.query(
            "SELECT coalesce(sum(quantity_sum), 0)::text FROM usage_rollups WHERE tenant_id = $1", [tenant])[0].text(0)
        #expect(total == "8.0000")  // 5 + 2 + 1, nothing twice
        #expect(try await harness.rollupMismatches([tenant, other]) == 0)
        try await harness.tearDown()
    }

    @Test("one id twice in a message at the same time with other contents: the same copy counts, whichever comes first")
    func tiedRepeatsDecidedTheSameWay() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(2)
        let now = TestClock.now().addingTimeInterval(-60)
        let aggregator = try harness.startAggregator(consumers: 1)
        // Ingest refuses such a request; one published straight to the broker still reaches the
        // Aggregator. The two copies tie on time, so the metric and then the quantity decide.
        for (tenant, quantities) in [(tenants[0], ["5", "3", "9"]), (tenants[1], ["9", "3", "5"])] {
            try await harness.publish([
                "[" + quantities.map { usageEventJSON(id: "tied", tenant: tenant, quantity: $0, time: now) }.joined(separator: ",") + "]"
            ])
        }
        try await harness.waitUntil("both messages committed") {
            try await harness.storedCounts(tenants) == [tenants[0]: 1, tenants[1]: 1]
        }
        #expect(await aggregator.stop() == 0)
        let kept = try await harness.database.query(
            "SELECT quantity::text FROM usage_events WHERE tenant_id = ANY($1::uuid[]) ORDER BY tenant_id",
            [PostgresTextArray(tenants.map { $0.uuidString })])
        #expect(kept.map { $0.text(0) } == ["3.0000", "3.0000"])
        #expect(try await harness.rollupMismatches(tenants) == 0)
        try await harness.tearDown()
    }

    @Test("upkeep forgets ids first seen more than 100 days ago and keeps younger ones")
    func expiredIDsForgotten() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        try await harness.database.query(
            """
            INSERT INTO usage_event_ids (tenant_id, event_id, first_seen) VALUES
              ($1, 'expired', now() - interval '101 days'), ($1, 'kept', now() - interval '99 days')
            """, [tenant])
        try await withCleanup {
            // Upkeep runs when an Aggregator starts, then hourly.
            let aggregator = try harness.startAggregator(consumers: 1)
            try await harness.waitUntil("the expired id forgotten") {
                try await harness.database.query(
                    "SELECT count(*) FROM usage_event_ids WHERE tenant_id = $1 AND event_id = 'expired'", [tenant])[0].decode(0, as: Int.self) == 0
            }
            // SIGTERM stops it gracefully once its service group is listening: upkeep runs
            // first, so wait until it has also counted an event (its consumers are up).
            try await harness.publish(["[\(usageEventJSON(id: "ready", tenant: tenant, quantity: "1", time: TestClock.now()))]"])
            try await harness.waitUntil("the aggregator consuming") { try await harness.storedCounts([tenant])[tenant] == 1 }
            #expect(await aggregator.stop() == 0)
            let kept = try await harness.database.query(
                // By id first: the table's key is (event_id, tenant_id).
                "SELECT event_id FROM usage_event_ids WHERE event_id IN ('expired', 'kept', 'ready') AND tenant_id = $1 ORDER BY event_id",
                [tenant]
            ).map { $0.text(0) }
            #expect(kept == ["kept", "ready"])
        } cleanup: {
            try await harness.database.query(
                "DELETE FROM usage_event_ids WHERE event_id IN ('expired', 'kept', 'ready') AND tenant_id = $1", [tenant])
            try await harness.tearDown()
        }
    }
}
