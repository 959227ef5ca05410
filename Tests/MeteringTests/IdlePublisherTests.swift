import DiskSpool
import Foundation
import RabbitMQClient
import TallyTestSupport
import Testing
import UsageEvents

@testable import Metering

@Suite("Durable publisher with an idle connection")
struct IdlePublisherTests {
    /// The confirm timeout is an hour: waiting for confirms on the dead connection would
    /// hang until the time limit, never pass by luck.
    @Test(
        "a submission after the broker closed the publisher's idle connection is confirmed on a new connection, not spooled",
        .timeLimit(.minutes(2)))
    func idleConnectionClosedByBroker() async throws {
        let probe = try await UsageQueueProbe.make()
        let name = "tally-test-idle-\(UUID().uuidString.prefix(8).lowercased())"
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 64 << 20)
        let publisher = DurablePublisher(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: name), spool: spool,
            logger: UsageQueueProbe.logger, confirmTimeout: .seconds(3600), counters: MeteringCounters(), refusalPolicy: RefusalPolicy(),
            exchange: probe.exchange)
        let tenant = UUID()
        func batch(_ id: String) -> UsageBatch {
            UsageBatch(events: [UsageEvent(id: id, tenantID: tenant, metric: "api_calls", quantity: 1, time: Date())])
        }
        try await withCleanup {
            async let running: Void = publisher.run()
            #expect(try await publisher.submit([batch("before-close")]) == .confirmed)
            try await BrokerConnections.close(named: name)
            #expect(try await publisher.submit([batch("after-close")]) == .confirmed)
            #expect(spool.unacknowledgedRecordCount == 0)
            publisher.finish()
            await running
            let received = try await probe.collect(tenant: tenant, expected: 2)
            #expect(Set(received.ids.keys) == ["before-close", "after-close"])
        } cleanup: {
            try? await probe.delete()
            await spool.close()
        }
    }
}
