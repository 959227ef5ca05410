import CivilTime
import Foundation
import PostgresClient
import TallyStore
import Testing
import UsageEvents

@testable import Aggregator

@Suite("Decoding usage messages")
struct UsageDecoderTests {
    let now = RFC3339.parse("2026-11-24T18:40:00Z")!
    let tenant = "3f0c1a52-7a43-4c1b-9f7e-0a4a9d1c2b3e"

    func message(_ body: String, schema: String? = "usage.v1", tag: UInt64 = 1) -> UsageMessage {
        UsageMessage(deliveryTag: tag, messageID: "m\(tag)", schema: schema, body: Array(body.utf8))
    }

    func event(_ id: String, quantity: String = "\"1\"", time: String = "2026-11-24T18:00:00.5Z") -> String {
        #"{"id": "\#(id)", "tenant_id": "\#(tenant)", "type": "api_calls", "quantity": \#(quantity), "time": "\#(time)"}"#
    }

    @Test("valid events become COPY rows with the UTC month as partition key")
    func validEvents() throws {
        let batch = UsageDecoder(now: now).decode([message("[\(event("a")), \(event(#"b\\c"#, quantity: "2.5"))]")])
        #expect(batch.eventCount == 2)
        #expect(batch.parkedEvents.isEmpty && batch.unreadable.isEmpty)
        let rows = String(decoding: batch.stagedRows.buffer, as: UTF8.self).split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false)
        }
        try #require(rows.count == 2)
        #expect(rows[0][1] == "a")
        #expect(rows[1][1] == #"b\\c"#)  // a backslash in an id is escaped for COPY
        #expect(rows[1][4] == "2.5")
        #expect(rows[0][6] == "2026-11-24T18:00:00.500000Z")
        #expect(rows[0][7] == "2026-11-01")
        #expect(rows[0][9] == "m1")
        #expect(batch.earliestEventTime == RFC3339.parse("2026-11-24T18:00:00.5Z"))
    }

    @Test("an invalid event is parked with its field and reason; the rest of its message goes on")
    func invalidEventParked() throws {
        let bad = #"{"id": "bad", "tenant_id": "\#(tenant)", "type": "Bad-Metric", "quantity": 1, "time": "2026-11-24T18:00:00Z"}"#
        let batch = UsageDecoder(now: now).decode([message("[\(event("a")), \(bad), \(event("c", quantity: "\"1.23456\""))]")])
        #expect(batch.eventCount == 1)
        #expect(batch.parkedEvents.map(\.eventID) == ["bad", "c"])
        #expect(batch.parkedEvents.map(\.field) == ["type", "quantity"])
        #expect(batch.parkedEvents.map(\.code) == ["invalid", "too_precise"])
        #expect(batch.parkedEvents[0].tenantID == tenant)
        #expect(batch.parkedEvents[0].messageID == "m1")
        #expect(try JSONParser.parse(Array(batch.parkedEvents[0].payload.utf8)) == (try JSONParser.parse(Array(bad.utf8))))
    }

    @Test("an event with a key sent twice is parked as it was written, naming the key; the rest of its message goes on")
    func duplicateKeyParked() throws {
        let twice =
            #"{"id": "twice", "tenant_id": "\#(tenant)", "type": "api_calls", "quantity": 1, "quantity": 1000, "time": "2026-11-24T18:00:00Z"}"#
        let nested =
            #"{"id": "nested", "tenant_id": "\#(tenant)", "type": "api_calls", "quantity": 1, "time": "2026-11-24T18:00:00Z", "metadata": {"r": 1, "r": 2}}"#
        let batch = UsageDecoder(now: now).decode([message("[\(event("a")), \(twice), \(nested), \(event("c"))]")])
        #expect(batch.eventCount == 2)
        #expect(batch.unreadable.isEmpty)
        #expect(batch.parkedEvents.map(\.eventID) == ["twice", "nested"])
        #expect(batch.parkedEvents.map(\.field) == ["quantity", "metadata.r"])
        #expect(batch.parkedEvents.map(\.code) == ["duplicate_key", "duplicate_key"])
        #expect(batch.parkedEvents.first?.reason.contains(#"the key "quantity" appears more than once"#) == true)
        #expect(batch.parkedEvents.map(\.payload) == [twice, nested])
        #expect(batch.parkedEvents.allSatisfy { $0.tenantID == tenant && $0.messageID == "m1" })
        let ids = String(decoding: batch.stagedRows.buffer, as: UTF8.self).split(separator: "\n").map { $0.split(separator: "\t")[1] }
        #expect(ids == ["a", "c"])
    }

    @Test(
        "messages that are not usage batches are refused whole, with a reason",
        arguments: [
            ("not json", "usage.v1", "not JSON"),
            (#"{"id": "x"}"#, "usage.v1", "not a JSON array"),
            ("[]", "usage.v1", "1 to 1000 events"),
            ("[1]", "invoice.v1", "unsupported x-tally-schema"),
        ])
    func unreadable(body: String, schema: String, reason: String) {
        let batch = UsageDecoder(now: now).decode([message(body, schema: schema, tag: 7), message("[\(event("ok"))]", tag: 8)])
        #expect(batch.unreadable.map(\.deliveryTag) == [7])
        #expect(batch.unreadable.first?.reason.contains(reason) == true)
        #expect(batch.eventCount == 1)
    }

    @Test("in parts: a part closes before a message once it holds the limit of (tenant, hour) pairs; parked and unreadable go last")
    func parts() throws {
        // Message i: three events of tenants 3i, 3i+1, 3i+2 in one hour; message 2 also a bad event.
        func tenant(_ index: Int) -> String { String(format: "3f0c1a52-7a43-4c1b-9f7e-%012d", index) }
        let bodies =
            (0..<5).map { index in
                var events = (0..<3).map { offset in
                    #"{"id": "e\#(index)-\#(offset)", "tenant_id": "\#(tenant(3 * index + offset))", "type": "api_calls", "quantity": 1, "time": "2026-11-24T18:00:00Z"}"#
                }
                if index == 2 {
                    events.append(
                        #"{"id": "bad", "tenant_id": "\#(tenant(0))", "type": "Bad-Metric", "quantity": 1, "time": "2026-11-24T18:00:00Z"}"#)
                }
                return message("[" + events.joined(separator: ",") + "]", tag: UInt64(index))
            } + [message("not json", tag: 9)]
        let parts = UsageDecoder(now: now).decode(bodies, tenantHoursPerPart: 5)
        // 3 + 3 pairs (closed: ≥ 5), 3 + 3 (closed), then the last 3 with the unreadable message.
        #expect(parts.map(\.eventCount) == [6, 6, 3])
        #expect(parts.map { $0.hourBounds.count } == [6, 6, 3])
        #expect(parts.dropLast().allSatisfy { $0.parkedEvents.isEmpty && $0.unreadable.isEmpty })
        #expect(parts.last?.parkedEvents.map(\.eventID) == ["bad"])
        #expect(parts.last?.unreadable.map(\.deliveryTag) == [9])
        // The same events as decoded whole, in the same order.
        let whole = UsageDecoder(now: now).decode(bodies)
        #expect(parts.flatMap(\.stagedRows.buffer) == whole.stagedRows.buffer)
        #expect(UsageDecoder(now: now).decode(bodies, tenantHoursPerPart: .max).count == 1)
    }

    @Test("events too old or in the future are parked (the edge refuses them; a worker must too)")
    func timeBounds() {
        let old = event("old", time: "2026-08-01T00:00:00Z")
        let future = event("future", time: "2026-11-24T18:50:00Z")
        let batch = UsageDecoder(now: now).decode([message("[\(old), \(future)]")])
        #expect(batch.eventCount == 0)
        #expect(Set(batch.parkedEvents.map(\.code)) == ["too_old", "in_future"])
    }

    @Test("an event not JSON inside (a number out of range) is parked alone as invalid_json; the message's other events are counted")
    func malformedEventAlone() {
        let bad =
            #"{"id": "bad", "tenant_id": "\#(tenant)", "type": "api_calls", "quantity": 1, "time": "2026-11-24T18:00:00Z", "metadata": {"v": 1e400}}"#
        let batch = UsageDecoder(now: now).decode([message("[\(event("a")), \(bad), \(event("b"))]")])
        #expect(batch.eventCount == 2)
        #expect(batch.unreadable.isEmpty)
        #expect(batch.parkedEvents.map(\.code) == ["invalid_json"])
        #expect(batch.parkedEvents.first?.field == "metadata.v")
        #expect(batch.parkedEvents.first?.eventID == "bad" && batch.parkedEvents.first?.tenantID == tenant)
        #expect(batch.parkedEvents.first?.payload == bad)
        #expect(batch.parkedEvents.first?.reason.hasPrefix("is not valid JSON: a number is out of range") == true)
    }

    @Test("the age limit counts from when the events were accepted (the message's timestamp), within the 97-day dedup window")
    func ageFromAcceptance() {
        // Accepted an hour ago, a minute inside its 90 days then: 59 minutes past them now.
        let accepted = now.addingTimeInterval(-3_600)
        let nearLimit = RFC3339.format(accepted.addingTimeInterval(-UsageEventValidator.maxAge + 60))
        func decoded(_ id: String, _ time: String, acceptedAt: Date?) -> DecodedBatch {
            UsageDecoder(now: now).decode([
                UsageMessage(
                    deliveryTag: 1, messageID: "m", schema: "usage.v1", body: Array("[\(event(id, time: time))]".utf8), acceptedAt: acceptedAt)
            ])
        }
        #expect(decoded("accepted", nearLimit, acceptedAt: accepted).eventCount == 1)
        // Without a timestamp (an older publisher), and with one later than now (a sender's
        // clock ahead), it is judged by now.
        #expect(decoded("unstamped", nearLimit, acceptedAt: nil).parkedEvents.map(\.code) == ["too_old"])
        #expect(decoded("ahead", nearLimit, acceptedAt: now.addingTimeInterval(86_400)).parkedEvents.map(\.code) == ["too_old"])
        // Accepted 8 days ago at 89.5 days old: 97.5 days old now, past the ids' window.
        let waited = now.addingTimeInterval(-8 * 86_400)
        let late = decoded("waited", RFC3339.format(waited.addingTimeInterval(-89.5 * 86_400)), acceptedAt: waited)
        #expect(late.parkedEvents.map(\.code) == ["too_old"])
        #expect(late.parkedEvents.first?.reason.contains("waited more than 7 days") == true)
        // Accepted at more than 90 days old: refused whatever the wait.
        let old = decoded("old", RFC3339.format(accepted.addingTimeInterval(-UsageEventValidator.maxAge - 1)), acceptedAt: accepted)
        #expect(old.parkedEvents.map(\.code) == ["too_old"])
    }

    @Test("the next batch's size: as many bytes as hold one transaction's tenant-hours at the last batch's mix")
    func nextBatchSize() {
        // 4 MiB over 5,000 tenant-hours: twice the bytes fit the 10,000 of a transaction.
        #expect(UsageHandler.nextBatchBytes(afterBytes: 4 << 20, tenantHours: 5_000, tenantHoursPerTransaction: 10_000) == 8 << 20)
        // 4 MiB over 20,000 (each event a tenant-hour of its own): less, which the worker
        // raises to its AGGREGATOR_BATCH_BYTES.
        #expect(UsageHandler.nextBatchBytes(afterBytes: 4 << 20, tenantHours: 20_000, tenantHoursPerTransaction: 10_000) == 2 << 20)
        // A handful of tenants: far more, which the worker lowers to its AGGREGATOR_BATCH_BYTES_MAX
        // (and beyond what an Int holds, the most it holds).
        #expect(UsageHandler.nextBatchBytes(afterBytes: 1 << 20, tenantHours: 3, tenantHoursPerTransaction: 10_000) == 3_495_253_333)
        #expect(UsageHandler.nextBatchBytes(afterBytes: 1 << 62, tenantHours: 1, tenantHoursPerTransaction: 4) == Int.max)
        // Nothing stored (every event parked, or an empty batch): no opinion.
        #expect(UsageHandler.nextBatchBytes(afterBytes: 4 << 20, tenantHours: 0, tenantHoursPerTransaction: 10_000) == nil)
        #expect(UsageHandler.nextBatchBytes(afterBytes: 0, tenantHours: 3, tenantHoursPerTransaction: 10_000) == nil)
    }

    @Test("the first tenants in lock order, picked without sorting them all, are those a full sort puts first", arguments: [0, 1, 20, 300])
    func firstTenants(count: Int) {
        for size in [0, 1, 19, 20, 21, 500] {
            let tenants = (0..<size).map { _ in UUID() }
            #expect(UsageLedger.first(count, of: tenants) == Array(tenants.sorted { $0.precedes($1) }.prefix(count)))
        }
    }
}
