import Foundation
import RabbitMQClient
import Testing
import UsageEvents

@testable import Metering

@Suite("Usage batches: the message and the spool record")
struct UsageBatchTests {
    let event = UsageEvent(id: "e-1", tenantID: UUID(), metric: "api_calls", quantity: 1, time: Date())

    @Test("the acceptance time goes into the message's timestamp and through a spool record, to the millisecond")
    func acceptanceTime() throws {
        let accepted = Date(timeIntervalSince1970: 1_795_000_000.987_6)
        let batch = UsageBatch(events: [event], traceparent: "00-abc-def-01", acceptedAt: accepted)
        // Seconds, rounded down: a worker never judges the events as accepted later than they were.
        #expect(batch.message.properties.timestamp == 1_795_000_000)
        let read = try #require(UsageBatch(spoolRecord: batch.spoolRecord))
        #expect(read.messageID == batch.messageID && read.body == batch.body && read.traceparent == "00-abc-def-01")
        #expect(read.acceptedAt == Date(timeIntervalSince1970: 1_795_000_000.987))
    }

    @Test("a spool record written before the acceptance time was kept reads whole, stamped when published")
    func recordWithoutAcceptanceTime() throws {
        let batch = UsageBatch(events: [event])
        let old = Array(batch.messageID.utf8) + [0x0A, 0x0A] + batch.body
        let read = try #require(UsageBatch(spoolRecord: old))
        #expect(read.body == batch.body && read.messageID == batch.messageID && read.traceparent == nil && read.acceptedAt == nil)
        let before = Int64(Date().timeIntervalSince1970)
        #expect(try #require(read.message.properties.timestamp) >= before)
        // A mangled time is not a record.
        #expect(UsageBatch(spoolRecord: Array("id\n\n@12x\n[]".utf8)) == nil)
    }
}
