import Foundation
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@Suite("Aggregator: poison messages, parking and replay")
struct PoisonAndReplayTests {
    func dlq(_ harness: AggregatorHarness, _ arguments: String...) async throws -> (status: Int32, output: String, errors: String) {
        try await TestEnvironment.run(
            AggregatorHarness.binary, ["dlq"] + arguments,
            environment: [
                "AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL, "AGGREGATOR_QUEUE": harness.queue,
            ])
    }

    @Test("an event holding a key twice is parked as it was written, naming the key; the rest of its message is counted")
    func duplicateKeyParked() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now().addingTimeInterval(-60)
        let aggregator = try harness.startAggregator(consumers: 1)
        defer { aggregator.kill() }
        let twice =
            #"{"id": "d1", "tenant_id": "\#(tenant.uuidString)", "type": "api_calls", "quantity": 1, "quantity": 1000, "time": "\#(now.ISO8601Format())"}"#
        try await harness.publish([
            "[\(usageEventJSON(id: "d0", tenant: tenant, time: now)), \(twice), \(usageEventJSON(id: "d2", tenant: tenant, time: now))]"
        ])
        try await harness.waitUntil("the two other events counted and the one parked") {
            let parked = try await harness.database.query(
                "SELECT count(*) FROM parked_events WHERE event_id = 'd1' AND tenant_id = $1", [tenant.uuidString])
            return try await harness.storedCounts([tenant])[tenant] == 2 && parked.first?.text(0) == "1"
        }
        let parked = try await harness.database.query(
            "SELECT code, field, payload, reason FROM parked_events WHERE event_id = 'd1' AND tenant_id = $1", [tenant.uuidString])
        #expect(parked.first?.text(0) == "duplicate_key" && parked.first?.text(1) == "quantity")
        #expect(parked.first?.text(2) == twice)
        #expect(parked.first?.text(3)?.contains(#"the key "quantity" appears more than once"#) == true)
        #expect(await aggregator.stop() == 0)
        try await harness.tearDown()
    }

    @Test("an event accepted near its 90 days and parked (its tenant missing) keeps its acceptance through a replay too early and counts on the next")
    func replayKeepsAcceptanceTime() async throws {
        let harness = try await AggregatorHarness.make()
        let stranger = UUID()
        let now = TestClock.now()
        // Accepted two hours ago at 90 days less an hour old: 90 days and an hour old now.
        let accepted = now.addingTimeInterval(-7_200).timeIntervalSince1970.rounded(.down)
        let time = Date(timeIntervalSince1970: accepted).addingTimeInterval(-UsageEventValidator.maxAge + 3_600)
        let aggregator = try harness.startAggregator(consumers: 1)
        defer { aggregator.kill() }
        let tenant = stranger.uuidString.lowercased()
        @Sendable func openParked() async throws -> [(id: String, acceptedAt: Date?)] {
            try await harness.database.query(
                """
                SELECT id, accepted_at FROM parked_events
                 WHERE event_id = 'near' AND tenant_id = $1 AND code = 'unknown_tenant' AND replayed_at IS NULL
                """, [tenant]
            ).map { (try #require($0.text(0)), try $0.decode(1, as: Date?.self)) }
        }
        try await harness.publish(
            ["[\(usageEventJSON(id: "near", tenant: stranger, time: time))]"], acceptedAt: Date(timeIntervalSince1970: accepted))
        try await harness.waitUntil("the event parked for its missing tenant") { try await openParked().count == 1 }
        let first = try #require(try await openParked().first)
        #expect(first.acceptedAt == Date(timeIntervalSince1970: accepted))
        // Replayed before the tenant exists: parked again, with the same acceptance (it took
        // the replay's time, and the next replay parked it as too_old for good).
        let replayed = try await dlq(harness, "replay", "--events", "--id", first.id)
        #expect(replayed.output.contains("replayed 1 parked event(s)"), "\(replayed)")
        try await harness.waitUntil("the event parked again") { try await openParked().first.map { $0.id != first.id } == true }
        let again = try #require(try await openParked().first)
        #expect(again.acceptedAt == Date(timeIntervalSince1970: accepted))
        try await harness.database.query(
            "INSERT INTO tenants (id, name, billing_email) VALUES ($1, 'late tenant', 'late@example.test')", [stranger])
        let replayedAgain = try await dlq(harness, "replay", "--events", "--id", again.id)
        #expect(replayedAgain.output.contains("replayed 1 parked event(s)"), "\(replayedAgain)")
        try await harness.waitUntil("the replayed event counted") { try await harness.storedCounts([stranger])[stranger] == 1 }
        #expect(await aggregator.stop() == 0)
        try await harness.tearDown()
    }

    @Test("an event not JSON inside is parked alone (invalid_json), the rest of its message counted, and it is never replayed")
    func notJSONNeverReplayed() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let now = TestClock.now().addingTimeInterval(-60)
        let aggregator = try harness.startAggregator(consumers: 1)
        defer { aggregator.kill() }
        let bad =
            #"{"id": "nj1", "tenant_id": "\#(tenant.uuidString)", "type": "api_calls", "quantity": 1, "time": "\#(now.ISO8601Format())", "name": "\ud800"}"#
        try await harness.publish([
            "[\(usageEventJSON(id: "nj0", tenant: tenant, time: now)), \(bad), \(usageEventJSON(id: "nj2", tenant: tenant, time: now))]"
        ])
        try await harness.waitUntil("the two good events counted and the other parked") {
            let parked = try await harness.database.query(
                "SELECT 1 FROM parked_events WHERE code = 'invalid_json' AND payload = $1", [bad])
            return try await harness.storedCounts([tenant])[tenant] == 2 && parked.count == 1
        }
        let row = try await harness.database.query("SELECT id, field, reason FROM parked_events WHERE code = 'invalid_json' AND payload = $1", [bad])
        #expect(row.first?.text(1) == "name")
        #expect(row.first?.text(2)?.hasPrefix("is not valid JSON: a high surrogate") == true)
        let id = try #require(row.first?.text(0))
        let refused = try await dlq(harness, "replay", "--events", "--id", id)
        #expect(refused.status == 1 && refused.errors.contains("#\(id) is not JSON inside"), "\(refused)")
        #expect(try await ParkedEvents.openPayloads(ids: [try #require(Int64(id))], after: 0, limit: 10, on: harness.database).isEmpty)
        #expect(await aggregator.stop() == 0)
        try await harness.tearDown()
    }

    @Test("unreadable messages and invalid events are parked with reasons, the queue goes on, and a fixed event replays once")
    func poisonParkedAndReplayed() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let stranger = UUID()
        let now = TestClock.now().addingTimeInterval(-60)
        let aggregator = try harness.startAggregator(consumers: 1)
        let port = try await aggregator.listeningPort()
        let badType = #"{"id": "p2", "tenant_id": "\#(tenant.uuidString)", "type": "Bad-Type", "quantity": 1, "time": "\#(now.ISO8601Format())"}"#
        try await harness.publish(["this is not json"])
        try await harness.publish(["[\(usageEventJSON(id: "p0", tenant: tenant, time: now))]"], schema: "invoice.v9")
        try await harness.publish([
            "["
                + [
                    usageEventJSON(id: "p1", tenant: tenant, time: now), badType, usageEventJSON(id: "p3", tenant: stranger, time: now),
                    usageEventJSON(id: "p4", tenant: tenant, quantity: "2.5", time: now),
                ].joined(separator: ",") + "]",
            "[\(usageEventJSON(id: "p5", tenant: tenant, time: now))]",
        ])
        try await harness.waitUntil("the valid events counted and the unreadable messages parked") {
            let counts = try await harness.storedCounts([tenant])
            let parked = try await harness.depth(".parked")
            return counts[tenant] == 3 && parked == 2
        }
        let parked = try await harness.database.query(
            "SELECT id, event_id, code, field FROM parked_events WHERE event_id IN ('p2', 'p3') AND tenant_id IN ($1, $2) ORDER BY event_id",
            [tenant.uuidString, stranger.uuidString.lowercased()])
        #expect(parked.map { $0.text(1) } == ["p2", "p3"])
        #expect(parked.map { $0.text(2) } == ["invalid", "unknown_tenant"])
        #expect(parked.map { $0.text(3) } == ["type", "tenant_id"])
        let metrics = try await AggregatorHarness.metrics(port: port)
        #expect(metrics["tally_aggregator_events_inserted_total"] == 3)
        #expect(metrics["tally_aggregator_events_parked_total"] == 2)
        #expect(metrics["tally_aggregator_messages_parked_total"] == 2)
        #expect(metrics["tally_aggregator_events_received_total"] == 5)

        let listing = try await dlq(harness, "list")
        #expect(listing.status == 0)
        #expect(listing.output.contains("parked messages in \(harness.queue).parked: 2"))
        #expect(listing.output.contains("body is not JSON"))
        #expect(listing.output.contains("unsupported x-tally-schema \"invoice.v9\""))
        // Listing looks without taking: what it peeked at returns when its connection closes.
        try await harness.waitUntil("the peeked messages back in the parking lot") { try await harness.depth(".parked") == 2 }

        // The fix: the tenant now exists. Replaying its parked event counts it once, however often.
        try await harness.database.query(
            "INSERT INTO tenants (id, name, billing_email) VALUES ($1, 'late tenant', 'late@example.test')", [stranger])
        let strangerEvent = try #require(parked.last?.text(0))
        let shown = try await dlq(harness, "show", strangerEvent)
        #expect(shown.output.contains("code: unknown_tenant"))
        #expect(shown.output.contains("\"id\": \"p3\"") || shown.output.contains("\"id\":\"p3\""))
        let replay = try await dlq(harness, "replay", "--events", "--id", strangerEvent)
        #expect(replay.output.contains("replayed 1 parked event(s)"))
        // Again, or with an id never parked: refused whole, naming the ids (it said
        // "replayed 0 parked event(s)" and exited 0, which read as done).
        let again = try await dlq(harness, "replay", "--events", "--id", strangerEvent, "--id", "987654321012")
        #expect(again.status == 1, "\(again)")
        #expect(again.errors.contains("#\(strangerEvent) (replayed already at "), "\(again.errors)")
        #expect(again.errors.contains("#987654321012 (no such parked event)"), "\(again.errors)")
        #expect(!again.errors.contains("USAGE"), "\(again.errors)")
        let mistypedQueue = try await dlq(harness, "list", "--queue", harness.queue + "x")
        #expect(mistypedQueue.status == 1 && mistypedQueue.errors.contains("the broker has no queue \(harness.queue)x.parked"), "\(mistypedQueue)")
        let missing = try await dlq(harness, "show", "987654321012")
        #expect(missing.status == 1 && missing.errors.contains("no parked event #987654321012"), "\(missing)")
        try await harness.waitUntil("the replayed event counted") { try await harness.storedCounts([stranger])[stranger] == 1 }
        // The same event sent once more, then a marker behind it on the same single consumer.
        try await harness.publish(["[\(usageEventJSON(id: "p3", tenant: stranger, time: now))]"])
        try await harness.publish(["[\(usageEventJSON(id: "p6", tenant: tenant, time: now))]"])
        try await harness.waitUntil("the marker counted") { try await harness.storedCounts([tenant])[tenant] == 4 }
        #expect(try await harness.storedCounts([stranger])[stranger] == 1)
        #expect(try await harness.rollupMismatches([tenant, stranger]) == 0)

        // Replayed messages that are still broken are parked again; nothing blocks.
        #expect(try await dlq(harness, "replay", "--messages").output.contains("replayed 2 parked message(s)"))
        try await harness.waitUntil("the broken messages parked again") { try await harness.depth(".parked") == 2 }
        #expect(try await dlq(harness, "purge", "--messages").status != 0)  // needs --yes
        #expect(try await dlq(harness, "purge", "--messages", "--yes").output.contains("purged 2 parked message(s)"))
        #expect(await aggregator.stop() == 0)
        try await harness.tearDown()
    }
}
