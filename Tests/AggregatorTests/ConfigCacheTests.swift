import CurlClient
import Foundation
import Metering
import PostgresClient
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

    @Test("a subscription, an alert and a plan's quota changed after a batch are used by the next batch")
    func nextBatchSeesChanges() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        let plan = "test-cache-\(harness.id)"
        try await harness.createPlan(plan, charges: "[\(AggregatorHarness.hardQuota("api_calls", 100))]")
        let connection = try await AggregatorHarness.connect()
        let cache = UsageConfigCache()
        var sent = 0
        func batch(_ count: Int) async throws -> LedgerOutcome {
            let events = (0..<count).map { index in
                usageEventJSON(id: "c\(sent + index)", tenant: tenant, time: TestClock.recent(30 + Double(index), before: now))
            }
            sent += count
            let body = Array(("[" + events.joined(separator: ",") + "]").utf8)
            let decoded = UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: body)])
            return try await UsageLedger.record(decoded, now: now, cache: cache, on: connection)
        }
        // No subscription yet: the state says so.
        #expect(try await batch(2).quotaStates.first?.subscription == QuotaState.Subscription.none)
        // A subscription through the API: the next batch has its quota.
        let start = RFC3339.format(now.addingTimeInterval(-3_600))
        #expect(
            try await post("/v1/subscriptions", #"{"tenant_id": "\#(tenant.uuidString.lowercased())", "plan": "\#(plan)", "start": "\#(start)"}"#)
                == 201)
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
}
