import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

/// How a period's completion and the storing of its events keep out of each other's way
/// (`UsagePeriodTotals`, migration 023): two transactions completing one period meet on its
/// `usage_periods` row, and a change to a tenant's subscriptions waits for the batches
/// holding the tenant's usage lock.
@Suite("Aggregator: completing periods beside batches")
struct PeriodCompletionTests {
    /// Whether the backend `pid` is waiting for a lock of `type` ('advisory', 'transactionid'),
    /// asked on `observer`, a connection of the test's own: while a test holds a lock, it
    /// must not wait for the shared pool, whose connections other tests' subscription
    /// changes may be holding while they wait for that very lock.
    static func waiting(on observer: PostgresConnection, pid: Int, for type: String?) async throws -> Bool {
        try await observer.query(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND ($2::text IS NULL OR locktype = $2) AND NOT granted", [pid, type]
        )[0].decode(0, as: Int.self) > 0
    }

    @Test("two transactions complete one period at once: the second waits on its row, finds it complete, and computes nothing twice")
    func oneCompletionOfAPeriod() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        // Usage over the last three hours (within this month: `recent` clamps), stored as the
        // Aggregator stores it.
        let times = (0..<60).map { TestClock.recent(Double($0) * 170 + 30, before: now) }
        let events = times.enumerated().map { index, time in
            usageEventJSON(id: "c\(index)", tenant: tenant, quantity: "\(index % 7 + 1)", time: time)
        }
        let body = Array(("[" + events.joined(separator: ",") + "]").utf8)
        let setup = try await AggregatorHarness.connect()
        _ = try await UsageLedger.record(
            UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: body)]), now: now,
            cache: UsageConfigCache(), on: setup)
        // A period of its own around those events, with edges (not on hour boundaries),
        // complete nowhere yet.
        let span = Period(
            start: Instant(times.min()!.addingTimeInterval(-17 * 60 - 13)), end: Instant(times.max()!.addingTimeInterval(11 * 60 + 13)))
        let period = TenantPeriod(tenant: tenant, span: span)
        let first = try await AggregatorHarness.connect()
        let second = try await AggregatorHarness.connect()
        let secondPID = try await second.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        try await first.begin()
        #expect(try await UsagePeriodTotals.complete([period], on: first) == [period])
        let waiting = Task {
            try await second.begin()
            let complete = try await UsagePeriodTotals.complete([period], on: second)
            try await second.commit()
            return complete
        }
        let observer = try await AggregatorHarness.connect()
        // Waiting on the first's row ('transactionid'), or, while upkeep adds a month's
        // partition, on the events table behind that DDL (which waits for the first): either
        // way the first must commit for it to go on.
        try await harness.waitUntil("the second completion waits on the first", limit: .seconds(60)) {
            try await Self.waiting(on: observer, pid: secondPID, for: nil)
        }
        try await first.commit()
        #expect(try await waiting.value == [period])
        // Completed once: the totals are the events' aggregation, as the rollups and edges say.
        let catalog = try await setup.withTransaction { try MetricCatalogRecords.load(on: $0) }
        let (totals, reference) = try await setup.withTransaction { connection in
            (
                try UsagePeriodTotals.values(of: [period], catalog: catalog, on: connection)[period],
                try UsageReader.rangeValues(tenant: tenant, over: span, catalog: catalog, on: connection)
            )
        }
        #expect(totals == reference)
        #expect(reference["api_calls"] != nil)
        for connection in [setup, first, second, observer] { await connection.close() }
        try await harness.tearDown()
    }

    @Test("a tenant created between a batch's completion and its storing: its events are counted and their period completed with them")
    func tenantCreatedMidBatch() async throws {
        let harness = try await AggregatorHarness.make()
        let now = TestClock.now()
        let tenant = UUID()
        let events = (0..<5).map { usageEventJSON(id: "m\($0)", tenant: tenant, time: TestClock.recent(Double($0) * 60 + 30, before: now)) }
        let body = Array(("[" + events.joined(separator: ",") + "]").utf8)
        let connection = try await AggregatorHarness.connect()
        let database = harness.database
        let outcome = try await UsageLedger.record(
            UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: body)]), now: now,
            cache: UsageConfigCache(), on: connection,
            betweenTransactions: {
                try await database.query(
                    "INSERT INTO tenants (id, name, billing_email) VALUES ($1, $2, 'agg@example.test')",
                    [tenant, "aggregator test \(harness.id) mid"])
            })
        #expect(outcome.inserted == 5 && outcome.parked == 0)
        // The month the events fall in is complete, and its totals hold them.
        let month = BillingCalendar.utcMonths.period(containing: Instant(TestClock.recent(30, before: now)))
        let period = TenantPeriod(tenant: tenant, span: month)
        let catalog = try await connection.withTransaction { try MetricCatalogRecords.load(on: $0) }
        let totals = try await connection.withTransaction { try UsagePeriodTotals.values(of: [period], catalog: catalog, on: $0)[period] }
        #expect(totals?["api_calls"] == Quantity(units: 5))
        await connection.close()
        try await harness.database.withTransaction { try TenantUsage.delete(of: [tenant], withTenants: true, on: $0) }
        try await harness.tearDown()
    }

    @Test("a subscription created while a batch holds the tenant's usage lock waits for that batch to commit")
    func subscriptionWaitsForBatch() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        let batch = try await AggregatorHarness.connect()
        try await batch.begin()
        try await UsagePeriodTotals.lockUsage([tenant], on: batch)
        let api = try await AggregatorHarness.connect()
        let apiPID = try await api.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        let created = Task {
            try await api.begin()
            try await api.query(
                "INSERT INTO subscriptions (id, tenant_id, started_at, anchor) VALUES (gen_random_uuid(), $1, $2, $2)",
                [tenant, now.addingTimeInterval(-3_600)])
            try await api.commit()
        }
        let observer = try await AggregatorHarness.connect()
        try await harness.waitUntil("the subscription waits on the tenant's usage lock", limit: .seconds(60)) {
            try await Self.waiting(on: observer, pid: apiPID, for: "advisory")
        }
        try await batch.commit()
        try await created.value
        let count = try await harness.database.query("SELECT count(*) FROM subscriptions WHERE tenant_id = $1", [tenant])[0]
            .decode(0, as: Int.self)
        #expect(count == 1)
        for connection in [batch, api, observer] { await connection.close() }
        try await harness.tearDown()
    }

    @Test("while a batch holds the usage lock: a change moving periods (ends_at, a plan change) waits for it, a Stripe id does not")
    func whichChangesWait() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        let subscription = try await SubscriptionStore(pool: harness.database).create(
            tenant: tenant, plan: "starter", start: now.addingTimeInterval(-3_600), trialDays: 0, grant: .byOperator, now: now)
        let batch = try await AggregatorHarness.connect()
        try await batch.begin()
        try await UsagePeriodTotals.lockUsage([tenant], on: batch)
        let api = try await AggregatorHarness.connect()
        // A lock wait fails at once instead of waiting: which statements wait shows without a clock.
        try await api.query("SET lock_timeout = '100ms'")
        func waits(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> Bool {
            do {
                try await api.begin()
                try await api.query(sql, parameters)
                try await api.commit()
                return false
            } catch  where error.sqlState == "55P03" {
                await api.rollback()
                return true
            }
        }
        #expect(try await !waits("UPDATE subscriptions SET stripe_subscription_id = $2 WHERE id = $1", [subscription.id, "sub_\(harness.id)"]))
        #expect(try await waits("UPDATE subscriptions SET ends_at = $2 WHERE id = $1", [subscription.id, now.addingTimeInterval(86_400)]))
        #expect(
            try await waits(
                """
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                VALUES ($1, 'professional', (SELECT max(version) FROM plan_versions WHERE plan_slug = 'professional'), $2, 'upgrade', $2)
                """, [subscription.id, now]))
        // Once the batch commits, the change goes through (it may still wait a moment for
        // other tests' batches sharing the bucket, so without the timeout).
        try await batch.commit()
        try await api.query("SET lock_timeout = 0")
        #expect(try await !waits("UPDATE subscriptions SET ends_at = $2 WHERE id = $1", [subscription.id, now.addingTimeInterval(86_400)]))
        for connection in [batch, api] { await connection.close() }
        try await harness.tearDown()
    }
}
