import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

/// The metering library while RabbitMQ is stopped long enough for the spool's disk to
/// fill (run alone, in the outage phase).
extension OutageSuite {
    @Suite("Spool disk filling during a broker outage (outage)")
    struct SpoolFullOutageTests {
        let logger = Logger(label: "test.outage.spool-full")

        /// The spool lives on a 256 KiB tmpfs, far below its byte limit, so it is the disk
        /// that fills: appends fail part-way (ENOSPC), the meter keeps what it holds in
        /// memory until that fills too, and `track` reports back-pressure. Then the disk grows
        /// (space freed while the broker is still away) and the spool takes more. Every
        /// `track` that returned must arrive exactly once: a failed append that left bytes
        /// behind would misplace the records appended after it (lost, or unreadable and set
        /// aside), and an acknowledgement that needed new disk space would publish events
        /// again and again.
        @Test(
            "tracked until the spool's disk is full and track refuses: once RabbitMQ is back, every accepted event arrives exactly once",
            .enabled(if: SmallFilesystem.isPermitted, "needs permission to mount a tmpfs (run as root)"))
        func spoolDiskFillsDuringOutage() async throws {
            let broker = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-outage-spool-full")
            let queue = "test.outage.spool-full.\(UUID().uuidString.prefix(8).lowercased())"
            let setup = try await AMQPConnection.connect(configuration: broker, logger: logger)
            try await setup.openChannel(1)
            try await Topology.tally.declare(on: setup)
            try await setup.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
            try await setup.bindQueue(queue, exchange: ExchangeName.usage, routingKey: "usage.#")
            await setup.close()
            let disk = try SmallFilesystem(bytes: 256 << 10)
            defer { disk.unmount() }

            let tenant = UUID()
            // One segment for everything: a rotation would drop a misplaced writer and hide the fault.
            let spool = try await DiskSpool.open(directory: disk.path + "/spool", maxBytes: 64 << 20)
            let counters = MeteringCounters()
            var publisherBroker = broker
            publisherBroker.connectionTimeout = .seconds(2)
            // A confirm timeout far beyond the test's length: no publish is abandoned and sent again.
            let publisher = DurablePublisher(
                configuration: publisherBroker, spool: spool, logger: logger, confirmTimeout: .seconds(600), counters: counters)
            var options = Meter.Options()
            options.memoryLimit = 5_000
            options.batchSize = 100
            let meter = Meter(publisher: publisher, counters: counters, options: options, logger: logger)
            async let running: Void = meter.run()

            // Stopped before anything is published: no publish is in flight when it goes.
            try await TestEnvironment.ops("stop", "rabbitmq")
            // Track like a caller that backs off when refused, until track refuses once `done` holds.
            var ids: [String] = []
            func trackUntilRefused(once done: () -> Bool) async throws {
                var refusedWhenDone = false
                while !refusedWhenDone {
                    do {
                        ids.append(try meter.track(tenant: tenant, metric: "api_calls"))
                    } catch {
                        #expect(error == .backPressure)
                        refusedWhenDone = done()
                        if !refusedWhenDone { try await Task.sleep(for: .milliseconds(20)) }
                    }
                    if ids.count % 100 == 0 { await Task.yield() }
                }
            }
            // The disk fills: a spool write fails part-way, memory fills behind it.
            try await trackUntilRefused { counters.snapshot.spoolWriteFailures > 0 }
            // Room is made while the broker is still away (an operator frees disk space): the
            // spool takes more, right behind the records written before the failed append.
            let spooledBeforeRoom = counters.snapshot.spooled
            try disk.resize(bytes: 1 << 20)
            try await trackUntilRefused { counters.snapshot.spooled > spooledBeforeRoom }
            #expect(counters.snapshot.spooled > 0)
            try await TestEnvironment.ops("start", "rabbitmq")

            let consumer = try await AMQPConnection.connectRetrying(
                configuration: broker, logger: logger,
                setUp: { connection in
                    try await connection.openChannel(1)
                    try await connection.setPrefetch(1000)
                    try await connection.consume(queue)
                })
            var seen: [String: Int] = [:]
            var unreadable = 0
            let own = tenant.uuidString.lowercased()
            func record(_ delivery: Delivery) {
                guard let events = (try? JSONSerialization.jsonObject(with: Data(delivery.body))) as? [[String: Any]] else {
                    unreadable += 1
                    return
                }
                for event in events where event["tenant_id"] as? String == own {
                    seen[event["id"] as? String ?? "?", default: 0] += 1
                }
            }
            while seen.count < ids.count, let delivery = try await consumer.nextDelivery(timeout: .seconds(60)) {
                record(delivery)
                try await consumer.ack(delivery.deliveryTag, multiple: true)
            }
            meter.shutdown()
            await running
            // Anything published twice would be waiting behind the last expected event.
            while let delivery = try await consumer.nextDelivery(timeout: .seconds(2)) {
                record(delivery)
                try await consumer.ack(delivery.deliveryTag, multiple: true)
            }
            #expect(unreadable == 0, "messages whose body is not JSON: spool bytes read from the wrong place")
            #expect(Set(seen.keys) == Set(ids), "missing \(Set(ids).subtracting(seen.keys).count) of \(ids.count)")
            #expect(seen.values.allSatisfy { $0 == 1 }, "\(seen.values.filter { $0 > 1 }.count) events arrived more than once")
            #expect(spool.unacknowledgedRecordCount == 0)
            #expect(counters.snapshot.deadLettered == 0)
            #expect(counters.snapshot.dropped == 0)
            try await consumer.deleteQueue(queue)
            await consumer.close()
            await spool.close()
        }
    }
}
