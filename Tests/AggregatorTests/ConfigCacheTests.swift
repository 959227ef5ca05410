import CurlClient
import Foundation
import Metering
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

/// The Aggregator's cache of plans, subscriptions and alerts (issue 13) against changes made
/// through the running Billing API (and, for a plan, which has no API yet, in SQL): the next
/// batch uses what changed, through the same cache instance as the batches before.
@Suite("Aggregator: cached configuration follows changes")
struct ConfigCacheTests {
    func post(_ path: String, _ body: String) async throws -> Int {
        let response = try await HTTPClient().send(
            .init(
                method: .post, url: TestEnvironment.apiURL + path,
                headers: ["Authorization": "Bearer \(TestEnvironment.adminToken)", "Content-Type": "application/json"],
                body: Data(body.utf8)))
        return response.status
    }

    /// One tenant, a plan with a hard quota of 100 api_calls, a connection and a cache of
    /// the test's own.
    struct Fixture {
        let harness: AggregatorHarness
        let tenant: UUID
        let now = TestClock.now()
        let plan: String
        let connection: PostgresConnection
        let cache = UsageConfigCache()

        static func make(plan prefix: String) async throws -> Fixture {
            let harness = try await AggregatorHarness.make()
            let tenant = try await harness.createTenants(1)[0]
            let plan = "\(prefix)-\(harness.id)"
            try await harness.createPlan(plan, charges: "[\(AggregatorHarness.hardQuota("api_calls", 100))]")
            return Fixture(harness: harness, tenant: tenant, plan: plan, connection: try await AggregatorHarness.connect())
        }
    }

    /// Subscribes the fixture's tenant to its plan from an hour ago, through the Billing API.
    func subscribe(_ fixture: Fixture) async throws {
        let start = RFC3339.format(fixture.now.addingTimeInterval(-3_600))
        let body = #"{"tenant_id": "\#(fixture.tenant.uuidString.lowercased())", "plan": "\#(fixture.plan)", "start": "\#(start)"}"#
        #expect(try await post("/v1/subscriptions", body) == 201)
    }

    @Test("a subscription, an alert and a plan's quota changed after a batch are used by the next batch")
    func nextBatchSeesChanges() async throws {
        let fixture = try await Fixture.make(plan: "test-cache")
        let (harness, tenant, now, plan, connection, cache) = (
            fixture.harness, fixture.tenant, fixture.now, fixture.plan, fixture.connection, fixture.cache
        )
        var sent = 0
        func batch(_ count: Int) async throws -> LedgerOutcome {
            defer { sent += count }
            return try await record(count, of: tenant, from: sent, now: now, cache: cache, on: connection)
        }
        // No subscription yet: the state says so.
        #expect(try await batch(2).quotaStates.first?.subscription == QuotaState.Subscription.none)
        // A subscription through the API: the next batch has its quota.
        try await subscribe(fixture)
        var state = try await batch(2).quotaStates.first
        #expect(state?.subscription == .active)
        #expect(state?.metrics["api_calls"]?.quota == 100)
        // An alert through the API: the next batch fires it.
        #expect(
            try await post(
                "/v1/alerts",
                #"{"tenant_id": "\#(tenant.uuidString.lowercased())", "metric": "api_calls", "kind": "threshold", "threshold_value": 3}"#) == 201)
        _ = try await batch(1)
        let fired = try await harness.database.query(
            "SELECT count(*) FROM alert_firings f JOIN usage_alerts a ON a.id = f.alert_id WHERE a.tenant_id = $1", [tenant]
        )[0].decode(0, as: Int.self)
        #expect(fired == 1)
        // The plan's quota changed (in place, as only a version no subscription bills with may be): the next batch uses the new quota.
        try await harness.database.query(
            #"UPDATE plan_versions SET charges = jsonb_set(charges, '{0,quota}', '"5"') WHERE plan_slug = $1"#, [plan])
        state = try await batch(1).quotaStates.first
        #expect(state?.metrics["api_calls"]?.quota == 5)
        #expect(state?.metrics["api_calls"]?.isExhausted == true)
        await connection.close()
        try await harness.tearDown()
    }

    /// One batch of `count` events of `tenant`, through `cache`.
    func record(_ count: Int, of tenant: UUID, from first: Int, now: Date, cache: UsageConfigCache, on connection: PostgresConnection)
        async throws -> LedgerOutcome
    {
        let events = (0..<count).map { index in
            usageEventJSON(id: "e\(first + index)", tenant: tenant, time: TestClock.recent(30 + Double(index), before: now))
        }
        let body = Array(("[" + events.joined(separator: ",") + "]").utf8)
        let decoded = UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: body)])
        return try await UsageLedger.record(decoded, now: now, cache: cache, on: connection)
    }

    @Test("a tenant deleted after the cache loaded it: its next events are parked as of an unknown tenant, not stored")
    func deletedTenant() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        let connection = try await AggregatorHarness.connect()
        let cache = UsageConfigCache()
        #expect(try await record(2, of: tenant, from: 0, now: now, cache: cache, on: connection).inserted == 2)
        #expect(try await record(1, of: tenant, from: 2, now: now, cache: cache, on: connection).inserted == 1)
        try await harness.database.withTransaction { try TenantUsage.delete(of: [tenant], withTenants: true, on: $0) }
        let outcome = try await record(3, of: tenant, from: 3, now: now, cache: cache, on: connection)
        #expect(outcome.inserted == 0)
        #expect(outcome.parked == 3)
        let parked = try await harness.database.query(
            "SELECT count(*) FROM parked_events WHERE tenant_id = $1 AND code = 'unknown_tenant'", [tenant.uuidString.lowercased()]
        )[0].decode(0, as: Int.self)
        #expect(parked == 3)
        try await harness.database.query("DELETE FROM parked_events WHERE tenant_id = $1", [tenant.uuidString.lowercased()])
        await connection.close()
        try await harness.tearDown()
    }

    @Test("the change log pruned past where the cache last read: the cache starts again and sees the change the pruning took")
    func prunedLog() async throws {
        let fixture = try await Fixture.make(plan: "test-prune")
        let (harness, tenant, now, connection, cache) = (fixture.harness, fixture.tenant, fixture.now, fixture.connection, fixture.cache)
        #expect(
            try await record(1, of: tenant, from: 0, now: now, cache: cache, on: connection).quotaStates.first?.subscription
                == QuotaState.Subscription.none)
        #expect(
            try await record(1, of: tenant, from: 1, now: now, cache: cache, on: connection).quotaStates.first?.subscription
                == QuotaState.Subscription.none)
        // The subscription's row in the log is pruned before the cache reads it.
        try await subscribe(fixture)
        // Pruning takes only rows of transactions older than every one running: another
        // test's transaction may hold it back for a moment.
        while try await logRows(of: tenant, in: harness) > 0 {
            if try await harness.database.withTransaction({ try ConfigVersions.pruneLog(olderThan: .zero, on: $0) }) == 0 {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let state = try await record(1, of: tenant, from: 2, now: now, cache: cache, on: connection).quotaStates.first
        #expect(state?.subscription == .active)
        #expect(state?.metrics["api_calls"]?.quota == 100)
        #expect(cache.emptied.restarts >= 1)
        await connection.close()
        try await harness.tearDown()
    }

    @Test(
        "a transaction held open while the log is pruned: a change made after it began keeps its row, and the next batch sees the change"
    )
    func pruningBehindOpenTransaction() async throws {
        let fixture = try await Fixture.make(plan: "test-held")
        let (harness, tenant, now, connection, cache) = (fixture.harness, fixture.tenant, fixture.now, fixture.connection, fixture.cache)
        let holder = try await AggregatorHarness.connect()
        try await withCleanup {
            #expect(try await record(1, of: tenant, from: 0, now: now, cache: cache, on: connection).inserted == 1)
            // A transaction with an id, left open (as an orphaned prepared transaction or a
            // session idle in a transaction would be): the cache's next read starts no later.
            try await holder.query("BEGIN")
            try await holder.query("SELECT pg_current_xact_id()")
            #expect(try await record(1, of: tenant, from: 1, now: now, cache: cache, on: connection).inserted == 1)
            try await subscribe(fixture)
            _ = try await harness.database.withTransaction { try ConfigVersions.pruneLog(olderThan: .zero, on: $0) }
            #expect(try await logRows(of: tenant, in: harness) >= 1)
            let state = try await record(1, of: tenant, from: 2, now: now, cache: cache, on: connection).quotaStates.first
            #expect(state?.subscription == .active)
            #expect(state?.metrics["api_calls"]?.quota == 100)
            // Whether the cache started again is not asserted: in a shared database, another
            // test's transaction running at the cache's last read may log a change that this
            // pruning (of any age) takes, and starting again is then right. With the row of a
            // change made after the held transaction began kept, a reader at or below that
            // transaction (as every reader is while it stays open) is never passed.
        } cleanup: {
            _ = try? await holder.query("ROLLBACK")
            await holder.close()
            await connection.close()
            try? await harness.tearDown()
        }
    }

    func logRows(of tenant: UUID, in harness: AggregatorHarness) async throws -> Int {
        try await harness.database.query("SELECT count(*) FROM config_changes WHERE tenant_id = $1", [tenant])[0].decode(0, as: Int.self)
    }
}
