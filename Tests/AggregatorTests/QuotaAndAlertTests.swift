import Foundation
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

@Suite("Aggregator: quota state, quota.exceeded and alerts")
struct QuotaAndAlertTests {
    /// A subscription on a plan of the test's own (api_calls: quota 1000, hard) whose
    /// current period began 10 days ago; the one before covers 20 days ago.
    func subscribe(_ harness: AggregatorHarness, tenant: UUID, now: Date) async throws {
        let plan = "test-hard-\(harness.id)"
        try await harness.createPlan(plan, charges: "[\(AggregatorHarness.hardQuota("api_calls", 1000))]")
        let start = Calendar(identifier: .gregorian).date(byAdding: .month, value: -1, to: now.addingTimeInterval(-10 * 86_400))!
        let subscription = try await harness.database.query(
            "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, $2, $2) RETURNING id", [tenant, start])[0]
            .decode(0, as: UUID.self)
        try await harness.database.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, $2, 1, $3, 'start', $3)
            """, [subscription, plan, start])
    }

    func events(_ prefix: String, _ range: Range<Int>, tenant: UUID, at time: Date) -> String {
        "[" + range.map { usageEventJSON(id: "\(prefix)-\($0)", tenant: tenant, time: time) }.joined(separator: ",") + "]"
    }

    @Test("alerts fire once per period per threshold across a crash and redelivery; quota state reaches a listener")
    func alertsOnce() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now()
        try await subscribe(harness, tenant: tenant, now: now)
        for (kind, column, value) in [("threshold", "threshold_value", "500"), ("quota", "threshold_percentage", "80")] {
            try await harness.database.query(
                "INSERT INTO usage_alerts (tenant_id, metric, kind, \(column)) VALUES ($1, 'api_calls', $2, $3::numeric)",
                [tenant, kind, value])
        }
        // Listeners: billing events for this tenant, and the quota-state feed as the metering middleware reads it.
        let listener = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL), logger: AggregatorHarness.logger)
        try await listener.openChannel(1)
        let eventQueue = "test.billing-events.\(harness.id)"
        try await listener.declareQueue(eventQueue, durable: false, exclusive: true)
        // Only what the Aggregator emits: billing runs of other tests may invoice this tenant too.
        try await listener.bindQueue(eventQueue, exchange: ExchangeName.billingEvents, routingKey: "alert.*")
        try await listener.bindQueue(eventQueue, exchange: ExchangeName.billingEvents, routingKey: "quota.*")
        try await listener.consume(eventQueue)
        // The quota-state fanout, read as a subscriber does (QuotaStateListener and QuotaView
        // have their own tests in MeteringTests).
        let states = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL), logger: AggregatorHarness.logger)
        try await states.openChannel(1)
        let stateQueue = "test.quota-state.\(harness.id)"
        try await states.declareQueue(stateQueue, durable: false, exclusive: true)
        try await states.bindQueue(stateQueue, exchange: ExchangeName.quotaState, routingKey: "")
        try await states.consume(stateQueue)
        /// Reads broadcasts until this tenant's api_calls reach `used`; a guard of minutes against hanging.
        func awaitState(used: Quantity) async throws -> QuotaState? {
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline {
                guard let delivery = try await states.nextDelivery(timeout: .seconds(1)) else { continue }
                try await states.ack(delivery.deliveryTag)
                let states = (try? QuotaState.decodeAll(delivery.body)) ?? []
                if let state = states.last(where: { $0.tenantID == tenant && $0.metrics["api_calls"]?.used == used }) { return state }
            }
            return nil
        }
        var aggregator = try harness.startAggregator(consumers: 2, name: "first")
        let earlier = now.addingTimeInterval(-20 * 86_400)
        let recent = now.addingTimeInterval(-60)
        // The earlier period crosses 500 (threshold); the current one 500, 80% and then the quota.
        try await harness.publish([events("old", 0..<300, tenant: tenant, at: earlier), events("old", 300..<600, tenant: tenant, at: earlier)])
        let current = [events("new", 0..<900, tenant: tenant, at: recent), events("new", 900..<1100, tenant: tenant, at: recent)]
        try await harness.publish(current)
        try await harness.waitUntil("1700 events stored") { try await harness.storedCounts([tenant])[tenant] == 1700 }
        let state = try await awaitState(used: 1100)
        #expect(state?.metrics["api_calls"]?.quota == 1000)
        #expect(state?.metrics["api_calls"]?.isExhausted == true)  // hard quota: the middleware refuses now
        #expect(state?.subscription == .active)
        // The period's event count rides along, and a view fed the broadcast refuses.
        #expect(state?.metrics["api_calls"]?.events == 1100)
        if let state {
            let view = QuotaView()
            view.apply(state)
            #expect(view.decision(tenant: tenant, metric: "api_calls", now: state.asOf) == .exceeded(used: 1100, quota: 1000))
        }
        // A crash, then the same messages again and a little more usage: nothing fires twice.
        aggregator.kill(SIGKILL)
        aggregator = try harness.startAggregator(consumers: 2, name: "second")
        try await harness.publish(current + [events("more", 0..<50, tenant: tenant, at: recent)])
        try await harness.waitUntil("1750 events stored") { try await harness.storedCounts([tenant])[tenant] == 1750 }
        try await harness.waitUntil("the outbox sent") {
            try await harness.database.query(
                "SELECT count(*) FROM outbox WHERE body::text LIKE $1 AND published_at IS NULL", ["%\(tenant.uuidString.lowercased())%"]
            )[0].decode(0, as: Int.self) == 0
        }
        var received: [String: String] = [:]  // message id → routing key
        let quietBy = ContinuousClock.now + .seconds(60)  // other tests' alerts arrive on the same keys
        while ContinuousClock.now < quietBy, let delivery = try await listener.nextDelivery(timeout: .seconds(3)) {
            guard String(decoding: delivery.body, as: UTF8.self).contains(tenant.uuidString.lowercased()) else { continue }
            received[delivery.properties.messageID ?? "?"] = delivery.routingKey
        }
        #expect(received.values.sorted() == ["alert.triggered", "alert.triggered", "alert.triggered", "quota.exceeded"])
        let firings = try await harness.database.query(
            """
            SELECT a.kind, count(*) FROM alert_firings f JOIN usage_alerts a ON a.id = f.alert_id
             WHERE a.tenant_id = $1 GROUP BY 1 ORDER BY 1
            """, [tenant])
        #expect(firings.map { "\($0.text(0) ?? ""):\($0.text(1) ?? "")" } == ["quota:1", "threshold:2"])
        #expect(try await awaitState(used: 1150) != nil)
        #expect(await aggregator.stop() == 0)
        await states.close()
        await listener.close()
        try await harness.tearDown()
    }
}
