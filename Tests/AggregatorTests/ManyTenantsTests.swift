import BillingEngine
import CivilTime
import Foundation
import Metering
import PostgresClient
import RabbitMQClient
import TallyRuntime
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

/// Thousands of tenants mixed in every message (issue 13): counts, period totals, quota
/// states, quota.exceeded and alerts each exactly what the stored events say.
@Suite("Aggregator: thousands of tenants per batch")
struct ManyTenantsTests {
    /// `count` tenants of this test; every fourth on a plan of the test's own (api_calls:
    /// quota 3, hard) whose period began 10 days ago, every eighth (offset 1) with an alert
    /// at 4 api_calls. Returns them in creation order.
    struct Population {
        let tenants: [UUID]
        let subscribed: Set<UUID>
        let alerted: Set<UUID>
        let periodStart: Date
    }

    static func populate(_ harness: AggregatorHarness, count: Int, now: Date) async throws -> Population {
        let tenants = try await harness.database.query(
            """
            INSERT INTO tenants (name, billing_email)
            SELECT 'many ' || $1 || ' #' || lpad(g::text, 6, '0'), 'agg@example.test' FROM generate_series(1, $2) AS g
            RETURNING id, name
            """, [harness.id, count]
        ).map { (try $0.decode(1, as: String.self), try $0.decode(0, as: UUID.self)) }.sorted { $0.0 < $1.0 }.map(\.1)
        let plan = "test-many-\(harness.id)"
        try await harness.database.query(
            """
            WITH code AS (INSERT INTO subscription_plans (slug) VALUES ($1) RETURNING slug)
            INSERT INTO plan_versions (plan_slug, version, name, currency, billing_interval, base_cents, charges)
            SELECT slug, 1, 'Test many', 'usd', 'month', 1000, '[{"metric": "api_calls", "enforcement": "hard", "quota": "3", "model": "standard", "included": "3", "unit_price": "10"}]' FROM code
            """, [plan])
        let start = now.addingTimeInterval(-10 * 86_400)
        let subscribed = tenants.enumerated().filter { $0.offset % 4 == 0 }.map(\.element)
        let array = { (ids: [UUID]) in PostgresTextArray(ids.map { $0.uuidString.lowercased() }) }
        try await harness.database.query(
            """
            WITH created AS (
                INSERT INTO subscriptions (tenant_id, started_at, anchor)
                SELECT t, $2, $2 FROM unnest($1::uuid[]) AS t RETURNING id
            )
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            SELECT id, $3, 1, $2, 'start', $2 FROM created
            """, [array(subscribed), start, plan])
        let alerted = tenants.enumerated().filter { $0.offset % 8 == 1 }.map(\.element)
        try await harness.database.query(
            "INSERT INTO usage_alerts (tenant_id, metric, kind, threshold_value) SELECT t, 'api_calls', 'threshold', 4 FROM unnest($1::uuid[]) AS t",
            [array(alerted)])
        return Population(tenants: tenants, subscribed: Set(subscribed), alerted: Set(alerted), periodStart: start)
    }

    /// Deletes the population's tenants that have neither a subscription nor an alert (5 in
    /// 8), with their usage: a run of this suite adds 27,000 tenants, and a database that
    /// keeps them all slows every later run. The others stay: their quota and alert events
    /// may still be on their way to the running Notifier, whose notifications reference
    /// the tenant. Then the harness is torn down.
    static func finish(_ harness: AggregatorHarness, _ population: Population) async throws {
        let plain = population.tenants.filter { !population.subscribed.contains($0) && !population.alerted.contains($0) }
        let deleted = try await harness.database.withTransaction { try TenantUsage.delete(of: plain, withTenants: true, on: $0) }
        #expect(deleted == plain.count)
        try await harness.tearDown()
    }

    /// Checks everything against the stored events: `expected` counts per tenant; each
    /// completed period's totals equal to an aggregation of its events; quota.exceeded in
    /// the outbox exactly for the subscribed tenants over 3; a firing exactly for the
    /// alerted tenants at 4 or more (the billing engine's rule, `AlertEvaluator`).
    static func verify(_ harness: AggregatorHarness, _ population: Population, expected: [UUID: Int]) async throws {
        let ids = PostgresTextArray(population.tenants.map { $0.uuidString.lowercased() })
        let stored = try await harness.storedCounts(population.tenants)
        #expect(population.tenants.filter { stored[$0, default: 0] != expected[$0, default: 0] }.isEmpty)
        let mismatches = try await harness.database.query(
            """
            WITH raw AS (
                SELECT p.tenant_id, p.period_start, p.period_end, e.metric, sum(e.quantity) AS quantity_sum, count(*) AS event_count
                  FROM usage_periods p
                  JOIN usage_events e ON e.tenant_id = p.tenant_id AND e.occurred_at >= p.period_start AND e.occurred_at < p.period_end
                 WHERE p.tenant_id = ANY($1::uuid[]) GROUP BY 1, 2, 3, 4
            ), kept AS (
                SELECT tenant_id, period_start, period_end, metric, quantity_sum, event_count
                  FROM usage_period_totals WHERE tenant_id = ANY($1::uuid[])
            )
            SELECT count(*) FROM ((SELECT * FROM raw EXCEPT SELECT * FROM kept) UNION ALL (SELECT * FROM kept EXCEPT SELECT * FROM raw)) AS d
            """, [ids])[0].decode(0, as: Int.self)
        #expect(mismatches == 0)
        let completed = try await harness.database.query(
            "SELECT count(DISTINCT tenant_id) FROM usage_periods WHERE tenant_id = ANY($1::uuid[])", [ids])[0].decode(0, as: Int.self)
        #expect(completed == expected.filter { $0.value > 0 }.count)

        let exceeded = Set(
            try await harness.database.query(
                """
                SELECT DISTINCT lower(body ->> 'tenant_id') FROM outbox
                 WHERE routing_key = 'quota.exceeded' AND lower(body ->> 'tenant_id') = ANY($1::text[])
                """, [ids]
            ).map { try $0.decode(0, as: String.self) })
        let overQuota = Set(population.subscribed.filter { stored[$0, default: 0] > 3 }.map { $0.uuidString.lowercased() })
        #expect(exceeded == overQuota)
        let duplicatesInOutbox = try await harness.database.query(
            """
            SELECT count(*) - count(DISTINCT lower(body ->> 'tenant_id')) FROM outbox
             WHERE routing_key = 'quota.exceeded' AND lower(body ->> 'tenant_id') = ANY($1::text[])
            """, [ids])[0].decode(0, as: Int.self)
        #expect(duplicatesInOutbox == 0)

        let fired = Set(
            try await harness.database.query(
                "SELECT a.tenant_id FROM alert_firings f JOIN usage_alerts a ON a.id = f.alert_id WHERE a.tenant_id = ANY($1::uuid[])",
                [ids]
            ).map { try $0.decode(0, as: UUID.self) })
        let rule = AlertRule(id: "r", metric: "api_calls", condition: .threshold(Quantity(units: 4)))
        let shouldFire = Set(
            population.alerted.filter { tenant in
                !AlertEvaluator.newlyFiring(
                    rules: [rule], input: AlertInput(value: Quantity(units: Int64(stored[tenant, default: 0])), quota: nil), firedThisPeriod: []
                ).isEmpty
            })
        #expect(fired == shouldFire)
        #expect(!overQuota.isEmpty && !shouldFire.isEmpty)  // the population exercises both
    }

    /// A connection of the test's own.
    /// The Aggregator's batch handler, in process, writing batches in parts of at most
    /// `tenantHoursPerTransaction` (tenant, hour) pairs; nothing told after commits.
    static func handler(tenantHoursPerTransaction: Int, metrics: AggregatorMetrics = AggregatorMetrics()) throws -> UsageHandler {
        var handler = UsageHandler(
            database: try PostgresConfiguration(url: TestEnvironment.databaseURL), metrics: metrics, afterCommit: { _, _ in })
        handler.tenantHoursPerTransaction = tenantHoursPerTransaction
        return handler
    }

    /// One usage message holding `events` (JSON objects), as the broker delivers it.
    static func delivery(_ tag: UInt64, _ events: [String]) -> Delivery {
        Delivery(deliveryTag: tag, body: Array(("[" + events.joined(separator: ",") + "]").utf8))
    }

    /// `events` (JSON objects) as one batch of 1000-event messages, decoded as the Aggregator does.
    static func decode(_ events: [String], now: Date) -> DecodedBatch {
        UsageDecoder(now: now).decode(
            stride(from: 0, to: events.count, by: 1000).map { chunk in
                UsageMessage(
                    deliveryTag: UInt64(chunk), messageID: nil, schema: nil,
                    body: Array(("[" + events[chunk..<min(chunk + 1000, events.count)].joined(separator: ",") + "]").utf8))
            })
    }

    @Test("one message holding events of 1,000 tenants: counts, period totals, quota states, quota.exceeded and alerts exact")
    func oneMessageThousandTenants() async throws {
        let harness = try await AggregatorHarness.make()
        let now = TestClock.now()
        let population = try await Self.populate(harness, count: 1_000, now: now)
        let connection = try await AggregatorHarness.connect()
        let cache = UsageConfigCache()
        var expected: [UUID: Int] = [:]
        func decode(_ events: [String]) -> DecodedBatch { Self.decode(events, now: now) }
        // Earlier usage in the current period: tenant i has i % 6 events.
        var earlier: [String] = []
        for (index, tenant) in population.tenants.enumerated() {
            for event in 0..<(index % 6) {
                // Minutes before the message, in the same calendar month (`recent` clamps).
                earlier.append(usageEventJSON(id: "e\(index)-\(event)", tenant: tenant, time: TestClock.recent(120 + Double(event), before: now)))
            }
            expected[tenant] = index % 6
        }
        _ = try await UsageLedger.record(decode(earlier), now: now, cache: cache, on: connection)
        // The one message: an event of each tenant; for every tenth, an id it sent before.
        var message: [String] = []
        for (index, tenant) in population.tenants.enumerated() {
            let resent = index % 10 == 0 && index % 6 > 0
            message.append(usageEventJSON(id: resent ? "e\(index)-0" : "m\(index)", tenant: tenant, time: TestClock.recent(60, before: now)))
            if !resent { expected[tenant, default: 0] += 1 }
        }
        let batch = decode(message)
        #expect(batch.stagedTimes.count == 1_000)
        let outcome = try await UsageLedger.record(batch, now: now, cache: cache, on: connection)
        let resentCount = population.tenants.indices.filter { $0 % 10 == 0 && $0 % 6 > 0 }.count
        #expect(outcome.inserted == 1_000 - resentCount)
        #expect(outcome.duplicates == resentCount)
        // The quota state of every tenant whose usage grew, as the stored events say.
        let stored = try await harness.storedCounts(population.tenants)
        #expect(outcome.quotaStates.count == 1_000 - resentCount)
        for state in outcome.quotaStates {
            let metric = state.metrics["api_calls"]
            #expect(metric?.used == Quantity(units: Int64(stored[state.tenantID, default: -1])), "tenant \(state.tenantID)")
            let subscribed = population.subscribed.contains(state.tenantID)
            #expect(metric?.quota == (subscribed ? 3 : nil))
            #expect(state.subscription == (subscribed ? .active : QuotaState.Subscription.none))
            #expect(state.periodStart.map { $0 <= now } == true && state.periodEnd.map { now < $0 } == true)
        }
        try await Self.verify(harness, population, expected: expected)
        await connection.close()
        try await Self.finish(harness, population)
    }

    @Test(
        "one batch of 20,000 tenants — beyond what PostgreSQL's lock table holds for one session, evaluated in chunks — commits whole and exact: counts, totals, quota states, quota.exceeded and alerts"
    )
    func batchBeyondTheLockTable() async throws {
        // A lock per tenant (two per tenant: usage and evaluation) was 40,000 locks, and the
        // local server's table holds about 64 × 200 connections: "out of shared memory", the
        // batch failed and the worker split it down to single messages.
        let harness = try await AggregatorHarness.make()
        let now = TestClock.now()
        let population = try await Self.populate(harness, count: 20_000, now: now)
        let connection = try await AggregatorHarness.connect()
        // Four events of each subscribed or alerted tenant (over its quota, past its alert), one of the others.
        let counts = population.tenants.map { population.subscribed.contains($0) || population.alerted.contains($0) ? 4 : 1 }
        let events = zip(population.tenants, counts).enumerated().flatMap { index, item in
            (0..<item.1).map { event in usageEventJSON(id: "w\(index)-\(event)", tenant: item.0, time: TestClock.recent(60, before: now)) }
        }
        let batch = Self.decode(events, now: now)
        #expect(batch.stagedTimes.count == 20_000)
        // Evaluated in chunks (`UsageStateEvaluator.tenantsPerEvaluation`): four here.
        #expect(20_000 > 3 * UsageStateEvaluator.tenantsPerEvaluation)
        let outcome = try await UsageLedger.record(batch, now: now, cache: UsageConfigCache(), on: connection)
        #expect(outcome.inserted == events.count && outcome.quotaStates.count == 20_000)
        #expect(Set(outcome.quotaStates.map(\.tenantID)).count == 20_000)
        let expected = Dictionary(uniqueKeysWithValues: zip(population.tenants, counts))
        for state in outcome.quotaStates where state.metrics["api_calls"]?.used != Quantity(units: Int64(expected[state.tenantID, default: -1])) {
            Issue.record("tenant \(state.tenantID): quota state \(String(describing: state.metrics["api_calls"]))")
        }
        try await Self.verify(harness, population, expected: expected)
        await connection.close()
        try await Self.finish(harness, population)
    }

    @Test(
        "a batch of four 1,000-tenant messages written in parts of 1,000 (tenant, hour) pairs: four transactions, every count, total, quota and alert exact"
    )
    func batchInParts() async throws {
        let harness = try await AggregatorHarness.make()
        let now = TestClock.now()
        let population = try await Self.populate(harness, count: 1_000, now: now)
        let connection = try await AggregatorHarness.connect()
        let metrics = AggregatorMetrics()
        let handler = try Self.handler(tenantHoursPerTransaction: 1_000, metrics: metrics)
        // Message m: one event of every tenant, all in one hour — each message a part; the
        // fourth event takes the subscribed tenants over their quota of 3 and fires the alerts.
        let time = TestClock.recent(60, before: now)
        let deliveries = (0..<4).map { message in
            Self.delivery(
                UInt64(message + 1),
                population.tenants.enumerated().map { index, tenant in usageEventJSON(id: "p\(message)-\(index)", tenant: tenant, time: time) })
        }
        let outcome = await handler.process(deliveries, in: connection, logger: AggregatorHarness.logger)
        #expect(outcome.failure == nil && outcome.poisoned.isEmpty)
        #expect(PrometheusText.parse(metrics.render())["tally_aggregator_batches_total"] == 4)
        // Each message a transaction's worth of tenant-hours: the next batch asked for is one message.
        let bytes = deliveries.reduce(0) { $0 + $1.body.count }
        #expect(outcome.nextBatchBytes == bytes / 4)
        try await Self.verify(harness, population, expected: Dictionary(uniqueKeysWithValues: population.tenants.map { ($0, 4) }))
        // The same batch again (redelivered after every part committed): nothing counted twice.
        #expect(await handler.process(deliveries, in: connection, logger: AggregatorHarness.logger).failure == nil)
        try await Self.verify(harness, population, expected: Dictionary(uniqueKeysWithValues: population.tenants.map { ($0, 4) }))
        await connection.close()
        try await Self.finish(harness, population)
    }

    @Test(
        "a batch fed as it arrives is staged a message at a time as decoded, its bodies dropped (an unreadable one's kept), in parts of two messages: every count, total, quota and alert exact, the unreadable reported, the invalid event parked"
    )
    func batchStagedAsDecoded() async throws {
        let harness = try await AggregatorHarness.make()
        let now = TestClock.now()
        let population = try await Self.populate(harness, count: 1_000, now: now)
        let connection = try await AggregatorHarness.connect()
        let metrics = AggregatorMetrics()
        var handler = try Self.handler(tenantHoursPerTransaction: 1_000, metrics: metrics)  // a part closes after two messages
        handler.stagingChunkBytes = 1  // every message's rows COPYed as soon as decoded
        // Eight messages, each of an event of half the tenants (the even messages the first
        // half), all in one hour: two messages make a part. The third also resends two ids
        // of the first and holds an invalid event; an unreadable message comes after the fourth.
        let time = TestClock.recent(60, before: now)
        let halves = [Array(population.tenants[..<500]), Array(population.tenants[500...])]
        var deliveries: [Delivery] = []
        for message in 0..<8 {
            var events = halves[message % 2].enumerated().map { index, tenant in
                usageEventJSON(id: "s\(message)-\(index)", tenant: tenant, time: time)
            }
            if message == 2 {
                events += [
                    usageEventJSON(id: "s0-0", tenant: halves[0][0], time: time),
                    usageEventJSON(id: "s0-1", tenant: halves[0][1], time: time),
                    usageEventJSON(id: "neg", tenant: halves[0][2], quantity: "-1", time: time),
                ]
            }
            deliveries.append(Self.delivery(UInt64(deliveries.count + 1), events))
            if message == 3 { deliveries.append(Delivery(deliveryTag: UInt64(deliveries.count + 1), body: Array("not json".utf8))) }
        }
        let unreadableTag = deliveries[4].deliveryTag
        var batch = deliveries
        let outcome = await handler.process(releasingBodies: &batch, in: connection, logger: AggregatorHarness.logger)
        #expect(outcome.failure == nil)
        #expect(outcome.poisoned.map(\.deliveryTag) == [unreadableTag])
        // Every body dropped but the unreadable message's, parked whole by the worker.
        #expect(batch.filter { !$0.body.isEmpty }.map(\.deliveryTag) == [unreadableTag])
        #expect(PrometheusText.parse(metrics.render())["tally_aggregator_batches_total"] == 4)
        let expected = Dictionary(uniqueKeysWithValues: population.tenants.map { ($0, 4) })
        try await Self.verify(harness, population, expected: expected)
        let parked = try await harness.database.query(
            "SELECT code FROM parked_events WHERE tenant_id = $1", [halves[0][2].uuidString.lowercased()]
        ).map { try $0.decode(0, as: String.self) }
        #expect(parked == ["out_of_range"])
        // Delivered again, bodies kept (as after a crash before the ack): nothing counted twice.
        let readable = deliveries.filter { $0.deliveryTag != unreadableTag }
        #expect(await handler.process(readable, in: connection, logger: AggregatorHarness.logger).failure == nil)
        try await Self.verify(harness, population, expected: expected)
        await connection.close()
        try await Self.finish(harness, population)
    }

    @Test("a fed batch cut off by the broker leaves its last part unwritten: delivered again, its events are counted and parked once")
    func fedBatchCutOff() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(2)
        let connection = try await AggregatorHarness.connect()
        let handler = try Self.handler(tenantHoursPerTransaction: 1)  // each message a part
        let time = TestClock.recent(60, before: TestClock.now())
        let ghost = UUID()  // no tenant of this Tally
        let deliveries = [
            Self.delivery(1, [usageEventJSON(id: "a", tenant: tenants[0], time: time), usageEventJSON(id: "g", tenant: ghost, time: time)]),
            Self.delivery(
                2,
                [usageEventJSON(id: "b", tenant: tenants[1], time: time), usageEventJSON(id: "neg", tenant: tenants[1], quantity: "-1", time: time)]),
        ]
        func parked() async throws -> [String] {
            try await harness.database.query(
                "SELECT code FROM parked_events WHERE tenant_id = ANY($1::text[]) ORDER BY code",
                [PostgresTextArray([tenants[1], ghost].map(\.lowercasedText))]
            ).map { try $0.decode(0, as: String.self) }
        }
        // The first part commits; the broker goes away before the batch is acked: the last
        // part, which parks the batch's refused events, is not written.
        var batch = deliveries
        let cut = await handler.process(releasingBodies: &batch, interrupted: true, in: connection, logger: AggregatorHarness.logger)
        #expect(cut.failure != nil)
        #expect(try await harness.storedCounts(tenants) == [tenants[0]: 1])
        #expect(try await parked().isEmpty)
        // Redelivered, whole: everything counted and parked once.
        #expect(await handler.process(deliveries, in: connection, logger: AggregatorHarness.logger).failure == nil)
        #expect(try await harness.storedCounts(tenants) == [tenants[0]: 1, tenants[1]: 1])
        #expect(try await parked() == ["out_of_range", "unknown_tenant"])
        await connection.close()
        try await harness.tearDown()
    }

    @Test("a batch written in parts fails in its second part, then is retried message by message: nothing counted or parked twice")
    func failureBetweenParts() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(2)
        // A refusal only the database makes: one value of this test's unique_count metric.
        let metric = try await harness.installRefusal(
            "parts", raise: "USING ERRCODE = 'check_violation', CONSTRAINT = 'test_refusal', MESSAGE = 'refused by the test'",
            when: "NEW.value = 'bad'")
        try await withCleanup {
            let connection = try await AggregatorHarness.connect()
            let handler = try Self.handler(tenantHoursPerTransaction: 1)  // each message a part
            let time = TestClock.recent(60, before: TestClock.now())
            let ghost = UUID()  // no tenant of this Tally
            let first = Self.delivery(
                1, [usageEventJSON(id: "a", tenant: tenants[0], time: time), usageEventJSON(id: "g", tenant: ghost, time: time)])
            let second = Self.delivery(
                2,
                [
                    usageEventJSON(id: "b", tenant: tenants[1], time: time),
                    usageEventJSON(id: "bad", tenant: tenants[1], metric: metric, time: time, metadata: #"{"k": "bad"}"#),
                ])
            func parked(_ tenant: UUID) async throws -> [String] {
                try await harness.database.query(
                    "SELECT code FROM parked_events WHERE tenant_id = $1 ORDER BY id", [tenant.uuidString.lowercased()]
                ).map { try $0.decode(0, as: String.self) }
            }
            // The first part commits (a's event counted; g's only set aside), the second fails;
            // fed, the bodies were dropped: the worker requeues it.
            var batch = [first, second]
            let failed = await handler.process(releasingBodies: &batch, in: connection, logger: AggregatorHarness.logger)
            #expect(failed.failure != nil && batch.allSatisfy(\.body.isEmpty))
            #expect(try await harness.storedCounts(tenants) == [tenants[0]: 1])
            #expect(try await parked(ghost).isEmpty)
            // Redelivered, the worker splits the batch: each message alone (the second's refused event parked alone).
            #expect(await handler.process([first], in: connection, logger: AggregatorHarness.logger).failure == nil)
            #expect(await handler.process([second], in: connection, logger: AggregatorHarness.logger).failure == nil)
            #expect(try await harness.storedCounts(tenants) == [tenants[0]: 1, tenants[1]: 1])
            #expect(try await parked(ghost) == ["unknown_tenant"])
            #expect(try await parked(tenants[1]) == ["database_refused"])
            await connection.close()
        } cleanup: {
            try await harness.removeRefusal(metric)
            try await harness.tearDown()
        }
    }

    /// How the Aggregator of the 5,000-tenant test writes its batches.
    enum Transactions: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Transactions of at most about 1,500 (tenant, hour) pairs: batches of several
        /// messages (up to 5,000 tenants) are written in parts, as at 50,000 tenants.
        case inParts = "in parts"
        /// `ops/SCALING.md`'s large transactions: the whole backlog in one batch and one
        /// transaction, whole messages sent again inside it.
        case large

        var environment: [String: String] {
            switch self {
            case .inParts: ["AGGREGATOR_TENANT_HOURS_PER_TRANSACTION": "1500"]
            case .large:
                [
                    "AGGREGATOR_BATCH_BYTES": "33554432", "AGGREGATOR_BATCH_BYTES_MAX": "67108864", "AGGREGATOR_PREFETCH": "400",
                    "AGGREGATOR_TENANT_HOURS_PER_TRANSACTION": "200000",
                ]
            }
        }

        var testDescription: String { rawValue }
    }

    @Test(
        "5,000 tenants mixed in every message, sent with duplicates to a running Aggregator: every count, total, quota and alert exact",
        arguments: Transactions.allCases)
    func fiveThousandTenants(transactions: Transactions) async throws {
        let harness = try await AggregatorHarness.make()
        let now = TestClock.now()
        let population = try await Self.populate(harness, count: 5_000, now: now)
        var random = SeededRandom(seed: 0x5_000)
        var events: [String] = []
        var expected: [UUID: Int] = [:]
        for (index, tenant) in population.tenants.enumerated() {
            let count = 1 + index % 6
            for event in 0..<count {
                events.append(
                    // Within the last 5 minutes and this calendar month: one period per tenant
                    // whenever it runs (at 00:03 on the 1st, unclamped, two).
                    usageEventJSON(
                        id: "f\(index)-\(event)", tenant: tenant, time: TestClock.recent(60 + Double(random.next() % 240), before: now)))
            }
            expected[tenant] = count
        }
        events.shuffle(using: &random)
        var bodies = stride(from: 0, to: events.count, by: 1000).map { "[" + events[$0..<min($0 + 1000, events.count)].joined(separator: ",") + "]" }
        // Sent again: three whole messages, and 2,000 events scattered in messages of their own.
        bodies += bodies.prefix(3)
        let again = (0..<2_000).map { _ in events[Int(random.next() % UInt64(events.count))] }
        bodies += stride(from: 0, to: again.count, by: 1000).map { "[" + again[$0..<min($0 + 1000, again.count)].joined(separator: ",") + "]" }
        let aggregator = try harness.startAggregator(consumers: 2, name: "many-\(transactions)", environment: transactions.environment)
        try await harness.publish(bodies)
        let total = expected.values.reduce(0, +)
        try await harness.waitUntil("\(total) events stored") {
            try await harness.storedCounts(population.tenants).values.reduce(0, +) == total
        }
        try await harness.waitUntil("the queue drained") { try await harness.depth() == 0 }
        #expect(await aggregator.stop() == 0)
        #expect(try await harness.depth(".parked") == 0)
        try await Self.verify(harness, population, expected: expected)
        try await Self.finish(harness, population)
    }
}
