import DiskSpool
import Foundation
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

@testable import Metering

@Suite("Metering library")
struct MeterTests {
    @Test("tracked events reach RabbitMQ exactly once, in batches of at most 1000")
    func trackAndPublish() async throws {
        let probe = try await UsageQueueProbe.make()
        let tenant = UUID()
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 64 << 20)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(
            configuration: try TestSpool.broker, spool: spool, logger: UsageQueueProbe.logger, confirmTimeout: .seconds(5),
            counters: counters, refusalPolicy: RefusalPolicy(), exchange: probe.exchange)
        let meter = Meter(publisher: publisher, counters: counters, logger: UsageQueueProbe.logger)
        async let running: Void = meter.run()
        var ids: [String] = []
        for index in 0..<5_000 {
            ids.append(try meter.track(tenant: tenant, metric: "api_calls", metadata: ["n": .number(Decimal(index))]))
        }
        let received = try await probe.collect(tenant: tenant, expected: ids.count)
        meter.shutdown()
        await running
        #expect(Set(received.ids.keys) == Set(ids))
        #expect(received.ids.values.allSatisfy { $0 == 1 })
        #expect(received.maxBatch <= 1000)
        #expect(counters.snapshot.queued == 5_000)
        #expect(counters.snapshot.dropped == 0)
        #expect(spool.unacknowledgedRecordCount == 0)
        try await probe.delete()
    }

    @Test("shutdown flushes everything in memory before run returns")
    func gracefulShutdownFlushes() async throws {
        let probe = try await UsageQueueProbe.make()
        let tenant = UUID()
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 64 << 20)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(
            configuration: try TestSpool.broker, spool: spool, logger: UsageQueueProbe.logger, confirmTimeout: .seconds(5),
            counters: counters, refusalPolicy: RefusalPolicy(), exchange: probe.exchange)
        var options = Meter.Options()
        options.linger = .seconds(60)  // nothing would leave before shutdown but for the flush
        let meter = Meter(publisher: publisher, counters: counters, options: options, logger: UsageQueueProbe.logger)
        async let running: Void = meter.run()
        let ids = try (0..<2_500).map { _ in try meter.track(tenant: tenant, metric: "estimates") }
        meter.shutdown()
        await running
        #expect(meter.pendingCount == 0)
        #expect(throws: MeteringError.shuttingDown) { try meter.track(tenant: tenant, metric: "estimates") }
        let received = try await probe.collect(tenant: tenant, expected: ids.count)
        #expect(Set(received.ids.keys) == Set(ids))
        try await probe.delete()
    }

    @Test("the caller's W3C traceparent travels in the message headers: a batch carries its first traced event's")
    func traceparentHeader() async throws {
        let probe = try await UsageQueueProbe.make()
        let tenant = UUID()
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 64 << 20)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(
            configuration: try TestSpool.broker, spool: spool, logger: UsageQueueProbe.logger, confirmTimeout: .seconds(5),
            counters: counters, refusalPolicy: RefusalPolicy(), exchange: probe.exchange)
        var options = Meter.Options()
        options.linger = .seconds(60)  // the three events leave together, at shutdown
        let meter = Meter(publisher: publisher, counters: counters, options: options, logger: UsageQueueProbe.logger)
        async let running: Void = meter.run()
        let first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let second = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let ids = [
            try meter.track(tenant: tenant, metric: "api_calls"),
            try meter.track(tenant: tenant, metric: "api_calls", traceparent: first),
            try meter.track(tenant: tenant, metric: "api_calls", traceparent: second),
        ]
        meter.shutdown()
        await running
        let messages = try await probe.messages(tenant: tenant, expected: ids.count)
        #expect(messages.count == 1)
        #expect(messages.first?.ids == ids)
        #expect(messages.first?.headers[HeaderName.traceparent] == .string(first))
        #expect(messages.first?.headers[HeaderName.schema] == .string("usage.v1"))
        try await probe.delete()
    }

    @Test("a submission after the publisher's run was cancelled is refused, not left waiting forever", .timeLimit(.minutes(1)))
    func submitAfterCancelledRun() async throws {
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 1 << 20)
        let publisher = DurablePublisher(configuration: TestSpool.unreachableBroker, spool: spool, logger: UsageQueueProbe.logger)
        let running = Task { await publisher.run() }
        running.cancel()
        await running.value
        let batch = UsageBatch(events: [UsageEvent(id: "late-1", tenantID: UUID(), metric: "api_calls", quantity: 1, time: Date())])
        await #expect(throws: MeteringError.shuttingDown) { try await publisher.submit([batch]) }
    }

    @Test("with the broker unreachable, batches are spooled; a publisher with the broker drains them in order")
    func spoolThenDrain() async throws {
        let probe = try await UsageQueueProbe.make()
        let tenant = UUID()
        let directory = TestSpool.directory()
        let now = Date()
        let events = (0..<3_000).map {
            UsageEvent(id: "spooled-\($0)", tenantID: tenant, metric: "documents", quantity: 1, time: now)
        }
        let offline = try await DiskSpool.open(directory: directory, maxBytes: 64 << 20)
        let unreachable = DurablePublisher(configuration: TestSpool.unreachableBroker, spool: offline, logger: UsageQueueProbe.logger)
        async let offlineRun: Void = unreachable.run()
        #expect(try await unreachable.submit(UsageBatch.batches(of: events)) == .spooled)
        unreachable.finish()
        await offlineRun
        #expect(offline.unacknowledgedRecordCount == 3)
        await offline.close()

        let reopened = try await DiskSpool.open(directory: directory, maxBytes: 64 << 20)
        let online = DurablePublisher(
            configuration: try TestSpool.broker, spool: reopened, logger: UsageQueueProbe.logger, confirmTimeout: .seconds(5),
            counters: MeteringCounters(), refusalPolicy: RefusalPolicy(), exchange: probe.exchange)
        async let onlineRun: Void = online.run()
        let received = try await probe.collect(tenant: tenant, expected: events.count)
        online.finish()
        await onlineRun
        #expect(Set(received.ids.keys) == Set(events.map(\.id)))
        #expect(reopened.unacknowledgedRecordCount == 0)
        try await probe.delete()
    }

    @Test("a full spool with no broker is back-pressure: refused, and what was spooled stays")
    func backPressure() async throws {
        let tenant = UUID()
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 1 << 20)
        let publisher = DurablePublisher(configuration: TestSpool.unreachableBroker, spool: spool, logger: UsageQueueProbe.logger)
        async let running: Void = publisher.run()
        var spooled = 0
        var refused = false
        for round in 0..<100 where !refused {
            let events = (0..<1000).map {
                UsageEvent(id: "bp-\(round)-\($0)", tenantID: tenant, metric: "api_calls", quantity: 1, time: Date())
            }
            do {
                #expect(try await publisher.submit([UsageBatch(events: events)]) == .spooled)
                spooled += 1
            } catch MeteringError.backPressure {
                refused = true
            }
        }
        #expect(refused)
        #expect(spooled > 0)
        #expect(spool.unacknowledgedRecordCount == spooled)
        publisher.finish()
        await running
    }

    @Test("with no broker and a full spool, track reports back-pressure and keeps what it accepted")
    func trackBackPressure() async throws {
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 1024)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(configuration: TestSpool.unreachableBroker, spool: spool, logger: UsageQueueProbe.logger, counters: counters)
        var options = Meter.Options()
        options.memoryLimit = 200
        options.linger = .milliseconds(1)
        let meter = Meter(publisher: publisher, counters: counters, options: options, logger: UsageQueueProbe.logger)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await meter.run() }
            var accepted = 0
            var refused = false
            while !refused, accepted < 10_000 {
                do {
                    try meter.track(tenant: UUID(), metric: "api_calls")
                    accepted += 1
                } catch let error as MeteringError {
                    #expect(error == .backPressure)
                    refused = true
                } catch {
                    Issue.record("unexpected \(error)")
                    refused = true
                }
                await Task.yield()
            }
            #expect(refused)
            #expect(counters.snapshot.refused == 1)
            meter.shutdown()
            await group.waitForAll()
            // Nothing accepted was dropped: every event is still in memory or in the spool.
            let spooled = try? await spool.peek(maxRecords: 10_000).reduce(0) { total, record in
                total
                    + (UsageBatch(spoolRecord: record.payload).map { try? JSONSerialization.jsonObject(with: Data($0.body)) as? [Any] }??.count ?? 0)
            }
            #expect(meter.pendingCount + (spooled ?? -1) == accepted)
            #expect(counters.snapshot.dropped == 0)
        }
    }

    @Test("track refuses an event bigger than SPEC §3 allows, naming the field; nothing of it is queued")
    func trackRefusesOversizedEvents() async throws {
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 1 << 20)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(configuration: TestSpool.unreachableBroker, spool: spool, logger: UsageQueueProbe.logger, counters: counters)
        let meter = Meter(publisher: publisher, counters: counters, logger: UsageQueueProbe.logger)
        let tenant = UUID()
        func refusedField(_ track: () throws -> Void) -> String? {
            do {
                try track()
                return nil
            } catch {
                guard case .invalidEvent(let field, _)? = error as? MeteringError else { return "\(error)" }
                return field
            }
        }
        #expect(
            refusedField { try meter.track(tenant: tenant, metric: "api_calls", metadata: ["blob": .string(String(repeating: "x", count: 9_000))]) }
                == "metadata")
        #expect(refusedField { try meter.track(tenant: tenant, metric: "api_calls", name: String(repeating: "n", count: 201)) } == "name")
        #expect(refusedField { try meter.track(tenant: tenant, metric: "api_calls", unit: String(repeating: "u", count: 201)) } == "unit")
        #expect(refusedField { try meter.track(tenant: tenant, metric: "api_calls", id: "") } == "id")
        #expect(refusedField { try meter.track(tenant: tenant, metric: "api_calls", id: String(repeating: "i", count: 256)) } == "id")
        #expect(meter.pendingCount == 0)
        // At the limits, accepted.
        try meter.track(
            tenant: tenant, metric: "api_calls", name: String(repeating: "n", count: 200), unit: String(repeating: "u", count: 200),
            metadata: ["blob": .string(String(repeating: "x", count: 8_000))], id: String(repeating: "i", count: 255))
        #expect(meter.pendingCount == 1)
    }

    @Test("track refuses bad metric names and quantities at once, naming the field")
    func trackValidation() throws {
        let spoolPath = TestSpool.directory()
        _ = spoolPath
        #expect(throws: MeteringError.invalidEvent(field: "metric", message: "must match [a-z][a-z0-9_]{0,99}")) {
            try Meter.check(metric: "API Calls", quantity: 1)
        }
        #expect(throws: MeteringError.self) { try Meter.check(metric: "api_calls", quantity: -1) }
        #expect(throws: MeteringError.self) { try Meter.check(metric: "api_calls", quantity: Quantity(units: 1_000_000_000_001)) }
        #expect(throws: Never.self) { try Meter.check(metric: "api_calls", quantity: try Quantity(parsing: "0.5")) }
        #expect(throws: Never.self) { try Meter.check(metric: "api_calls", quantity: .maximumPerEvent) }
    }
}
