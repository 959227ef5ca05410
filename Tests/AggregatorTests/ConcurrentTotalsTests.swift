import Foundation
import Metering
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

/// Batches of one tenant committed side by side evaluate with the period totals their own
/// statement left: the row where they meet orders them, so each counts every batch
/// committed before it — no evaluation lock, no read.
@Suite("Aggregator: batches of one tenant committed side by side")
struct ConcurrentTotalsTests {
    @Test("four connections store one tenant's usage at once: each batch's quota state counts every batch committed before it")
    func eachCountsTheOnesBefore() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        let plan = "test-side-\(harness.id)"
        try await harness.createPlan(plan, charges: "[\(AggregatorHarness.hardQuota("api_calls", 150))]")
        _ = try await SubscriptionStore(pool: harness.database).create(
            tenant: tenant, plan: plan, start: now.addingTimeInterval(-10 * 86_400), trialDays: 0, grant: .byOperator, now: now)
        var connections: [PostgresConnection] = []
        for _ in 0..<4 { connections.append(try await AggregatorHarness.connect()) }
        let batches = 20
        let perBatch = 3
        // Each connection as a process of its own: its own cache.
        let positions = try await withThrowingTaskGroup(of: [QuotaState.Metric].self) { group in
            for (index, connection) in connections.enumerated() {
                group.addTask {
                    let cache = UsageConfigCache()
                    var positions: [QuotaState.Metric] = []
                    for batch in 0..<batches {
                        let events = (0..<perBatch).map { event in
                            usageEventJSON(id: "s\(index)-\(batch)-\(event)", tenant: tenant, time: TestClock.recent(60, before: now))
                        }
                        let body = Array(("[" + events.joined(separator: ",") + "]").utf8)
                        let decoded = UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: body)])
                        let outcome = try await UsageLedger.record(decoded, now: now, cache: cache, on: connection)
                        positions += outcome.quotaStates.compactMap { $0.metrics["api_calls"] }
                    }
                    return positions
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        for connection in connections { await connection.close() }
        // In commit order the totals are 3, 6, … 240: had two batches read without seeing
        // each other, two would say the same count and none the whole.
        #expect(positions.count == connections.count * batches)
        #expect(positions.compactMap(\.events).sorted() == (1...(connections.count * batches)).map { Int64($0 * perBatch) })
        #expect(positions.allSatisfy { $0.events.map { Quantity(units: $0) } == $0.used })
        #expect(positions.filter(\.isExhausted).count == positions.filter { $0.used >= Quantity(units: 150) }.count)
        // The quota crossed once, by whichever batch took it over 150.
        let exceeded = try await harness.database.query(
            "SELECT count(*) FROM outbox WHERE routing_key = 'quota.exceeded' AND lower(body ->> 'tenant_id') = $1",
            [tenant.uuidString.lowercased()]
        )[0].decode(0, as: Int.self)
        #expect(exceeded == 1)
        try await harness.tearDown()
    }

    @Test("after an upgrade, a batch counting only another metric says where the hard quota now stands: a view lets the refused metric through")
    func hardQuotaAfterUpgrade() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        let small = "test-hard5-\(harness.id)"
        let large = "test-hard100-\(harness.id)"
        // The larger plan costs more: changing to it is an upgrade, in force at once.
        for (plan, quota, base) in [(small, 5, 1000), (large, 100, 2000)] {
            try await harness.createPlan(
                plan, baseCents: base,
                charges:
                    #"[\#(AggregatorHarness.hardQuota("api_calls", quota)), {"metric": "estimates", "enforcement": "soft", "model": "standard", "included": "0", "unit_price": "1"}]"#
            )
        }
        let subscriptions = SubscriptionStore(pool: harness.database)
        let subscription = try await subscriptions.create(
            tenant: tenant, plan: small, start: now.addingTimeInterval(-10 * 86_400), trialDays: 0, grant: .byOperator, now: now)
        let connection = try await AggregatorHarness.connect()
        let cache = UsageConfigCache()
        func batch(_ metric: String, _ count: Int, _ prefix: String, secondsAgo: Double) async throws -> [QuotaState] {
            let events = (0..<count).map {
                usageEventJSON(id: "\(prefix)\($0)", tenant: tenant, metric: metric, time: TestClock.recent(secondsAgo, before: now))
            }
            let body = Array(("[" + events.joined(separator: ",") + "]").utf8)
            let decoded = UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: body)])
            return try await UsageLedger.record(decoded, now: now, cache: cache, on: connection).quotaStates
        }
        let view = QuotaView()
        for state in try await batch("api_calls", 6, "a", secondsAgo: 60) { view.apply(state) }
        #expect(view.decision(tenant: tenant, metric: "api_calls", now: now) == .exceeded(used: Quantity(units: 6), quota: Quantity(units: 5)))
        _ = try await subscriptions.changePlan(id: subscription.id, to: large, at: now.addingTimeInterval(-30), now: now)
        // Only estimates counted (after the upgrade), and the state still says where api_calls
        // stands, under the new plan.
        let states = try await batch("estimates", 2, "e", secondsAgo: 10)
        let position = try #require(states.first?.metrics["api_calls"])
        #expect(position.used == Quantity(units: 6) && position.quota == Quantity(units: 100) && position.events == 6)
        for state in states { view.apply(state) }
        #expect(view.decision(tenant: tenant, metric: "api_calls", now: now) == .allow)
        await connection.close()
        try await harness.tearDown()
    }
}
