import BillingEngine
import Foundation
import PostgresClient
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

@Suite("Aggregator: anomaly alerts")
struct AnomalyAlertTests {
    @Test("a spike over a steady 24-hour baseline fires the anomaly alert once; the baseline alone does not")
    func spikeFiresOnce() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        try await harness.database.query("INSERT INTO usage_alerts (tenant_id, metric, kind) VALUES ($1, 'api_calls', 'anomaly')", [tenant])
        let connection = try await PostgresConnection.connect(
            configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), logger: AggregatorHarness.logger)
        let hour: TimeInterval = 3600
        let spikeHour = (TestClock.now().timeIntervalSince1970 / hour).rounded(.down) * hour - hour
        func write(_ prefix: String, count: Int, hourStart: TimeInterval) async throws {
            let events = (0..<count).map {
                usageEventJSON(id: "\(prefix)-\($0)", tenant: tenant, time: Date(timeIntervalSince1970: hourStart + Double($0) * 10))
            }
            let message = UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: Array("[\(events.joined(separator: ","))]".utf8))
            _ = try await UsageLedger.record(UsageDecoder(now: TestClock.now()).decode([message]), now: TestClock.now(), on: connection)
        }
        func firings() async throws -> Int {
            try await harness.database.query(
                "SELECT count(*) FROM alert_firings f JOIN usage_alerts a ON a.id = f.alert_id WHERE a.tenant_id = $1", [tenant]
            )[0].decode(0, as: Int.self)
        }
        for back in (1...24).reversed() {
            try await write("base-\(back)", count: 10 + back % 3, hourStart: spikeHour - Double(back) * hour)
        }
        #expect(try await firings() == 0)
        try await write("spike", count: 200, hourStart: spikeHour)
        #expect(try await firings() == 1)
        try await write("spike-more", count: 100, hourStart: spikeHour)
        #expect(try await firings() == 1)
        let outbox = try await harness.database.query(
            "SELECT count(*) FROM outbox WHERE routing_key = 'alert.triggered' AND body::text LIKE $1",
            ["%\(tenant.uuidString.lowercased())%"])[0].decode(0, as: Int.self)
        #expect(outbox == 1)
        await connection.close()
        try await harness.tearDown()
    }

    @Test("a spike followed in the same batch by an event of the next hour is judged too (only the newest hour was)")
    func spikeBeforeNewestHour() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        try await harness.database.query("INSERT INTO usage_alerts (tenant_id, metric, kind) VALUES ($1, 'api_calls', 'anomaly')", [tenant])
        let connection = try await PostgresConnection.connect(
            configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), logger: AggregatorHarness.logger)
        let hour: TimeInterval = 3600
        let currentHour = (TestClock.now().timeIntervalSince1970 / hour).rounded(.down) * hour
        let spikeHour = currentHour - hour
        func record(_ events: [String]) async throws {
            let message = UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: Array("[\(events.joined(separator: ","))]".utf8))
            _ = try await UsageLedger.record(UsageDecoder(now: TestClock.now()).decode([message]), now: TestClock.now(), on: connection)
        }
        for back in (1...24).reversed() {
            try await record(
                (0..<(10 + back % 3)).map {
                    usageEventJSON(
                        id: "base-\(back)-\($0)", tenant: tenant, time: Date(timeIntervalSince1970: spikeHour - Double(back) * hour + Double($0) * 10)
                    )
                })
        }
        // One message: 200 events in the spike hour, then one in the hour after it.
        try await record(
            (0..<200).map { usageEventJSON(id: "spike-\($0)", tenant: tenant, time: Date(timeIntervalSince1970: spikeHour + Double($0) * 10)) }
                + [usageEventJSON(id: "next-hour", tenant: tenant, time: Date(timeIntervalSince1970: currentHour + 1))])
        let fired = try await harness.database.query(
            "SELECT count(*) FROM alert_firings f JOIN usage_alerts a ON a.id = f.alert_id WHERE a.tenant_id = $1", [tenant]
        )[0].decode(0, as: Int.self)
        #expect(fired == 1)
        await connection.close()
        try await harness.tearDown()
    }
}
