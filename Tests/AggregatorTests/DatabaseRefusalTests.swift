import Foundation
import PostgresClient
import TallyTestSupport
import Testing

/// One bad event never takes its message's other events (other tenants' included) with
/// it: what the validator can see is refused in the unit the database enforces, and
/// what only the database refuses is found by splitting the message.
@Suite("Aggregator: one refused event, not its message")
struct DatabaseRefusalTests {
    @Test("an event only the database refuses is parked alone; ids long in code points and ids with NUL are parked; a long unique value is counted")
    func refusedEventsParkedAlone() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(2)
        let (tenant, neighbour) = (tenants[0], tenants[1])
        // A refusal the validator cannot foresee: a check violation raised for one distinct
        // value of this test's own unique_count metric.
        let metric = try await harness.installRefusal(
            "refusal", raise: "USING ERRCODE = 'check_violation', CONSTRAINT = 'test_refusal', MESSAGE = 'refused by the test: ' || NEW.value",
            when: "NEW.value = 'bad'")
        try await withCleanup {
            let time = TestClock.now().addingTimeInterval(-60)
            let combining = "x" + String(repeating: "\u{0301}", count: 300)  // one Character, 301 code points
            let events = [
                usageEventJSON(id: "ok-1", tenant: tenant, time: time),
                usageEventJSON(id: "uq-ok", tenant: tenant, metric: metric, time: time, metadata: #"{"k": "ok"}"#),
                usageEventJSON(id: "uq-bad", tenant: tenant, metric: metric, time: time, metadata: #"{"k": "bad"}"#),
                usageEventJSON(id: "ok-2", tenant: neighbour, time: time),
                usageEventJSON(id: combining, tenant: tenant, time: time),
                usageEventJSON(id: #"nul\u0000id"#, tenant: tenant, time: time),
                usageEventJSON(
                    id: "uq-long", tenant: tenant, metric: metric, time: time, metadata: #"{"k": "\#(String(repeating: "z", count: 3000))"}"#),
            ]
            try await harness.publish(["[" + events.joined(separator: ",") + "]"])
            let aggregator = try harness.startAggregator(consumers: 1)
            try await harness.waitUntil("the message's other events counted and the refused ones parked") {
                let counts = try await harness.storedCounts([tenant, neighbour])
                let parked = try await harness.database.query(
                    "SELECT count(*) FROM parked_events WHERE tenant_id = $1", [tenant.uuidString.lowercased()])[0].decode(0, as: Int.self)
                return counts[tenant] == 3 && counts[neighbour] == 1 && parked == 3
            }
            #expect(await aggregator.stop() == 0)
            let parked = try await harness.database.query(
                "SELECT event_id, code, field, reason FROM parked_events WHERE tenant_id = $1 ORDER BY id", [tenant.uuidString.lowercased()])
            let byCode = Dictionary(grouping: parked, by: { $0.text(1) ?? "" })
            #expect(byCode["database_refused"]?.map { $0.text(0) } == ["uq-bad"])
            #expect(byCode["database_refused"]?.first?.text(3)?.contains("refused by the test: bad") == true)
            // Labels are cut to 255 code points (the payload keeps the whole event).
            let cut = String(String.UnicodeScalarView(combining.unicodeScalars.prefix(255)))
            #expect(Set(byCode["invalid"]?.map { $0.text(0) } ?? []) == [cut, #"nul\u0000id"#])
            #expect(byCode["invalid"]?.allSatisfy { $0.text(2) == "id" } == true)
            // The two distinct values counted: "ok" and the 3,000-byte one (kept as its digest).
            let distinct = try await harness.database.query(
                "SELECT count(*) FROM usage_rollup_values WHERE tenant_id = $1 AND metric = $2", [tenant, metric])[0].decode(0, as: Int.self)
            #expect(distinct == 2)
            #expect(try await harness.depth(".parked") == 0)
        } cleanup: {
            try await harness.removeRefusal(metric)
            try await harness.tearDown()
        }
    }
}
