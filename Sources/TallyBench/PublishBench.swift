import ArgumentParser
import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import UsageEvents

/// Library publish throughput with confirms against raw publish-with-confirms of the same bodies.
struct PublishBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "publish", abstract: "Publish throughput vs raw confirms.")
    @Option var events = 300_000

    func run() async throws {
        let broker = try BenchSupport.broker()
        let tenant = UUID()
        let sample = (0..<1000).map { _ in UsageEvent(id: EventID.make(), tenantID: tenant, metric: "api_calls", quantity: 1, time: Date()) }
        let body = UsageBatch(events: sample).body
        let batches = events / 1000

        // Raw: the same bodies through the AMQP client, 10 batches in flight per confirm wait.
        let raw = try await AMQPConnection.connect(configuration: broker, logger: BenchSupport.logger)
        try await raw.openChannel(1, confirms: true)
        try await Topology.tally.declare(on: raw)
        let rawStart = ContinuousClock.now
        for _ in 0..<(batches / 10) {
            let messages = (0..<10).map { _ in
                OutgoingMessage(
                    exchange: ExchangeName.usage, routingKey: RoutingKey.usageV1, body: body,
                    properties: AMQPProperties(contentType: "application/json", messageID: EventID.make()))
            }
            _ = try await raw.publish(messages)
        }
        let rawSeconds = BenchSupport.seconds(ContinuousClock.now - rawStart)
        let rawBytes = Double(body.count * (batches / 10) * 10) / rawSeconds
        await raw.close()

        // Library: track() everything, then wait until every batch is confirmed.
        let spool = try await BenchSupport.spool()
        let counters = MeteringCounters()
        let publisher = DurablePublisher(configuration: broker, spool: spool, logger: BenchSupport.logger, counters: counters)
        var options = Meter.Options()
        options.memoryLimit = events * 2
        let meter = Meter(publisher: publisher, counters: counters, options: options, logger: BenchSupport.logger)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await meter.run() }
            for _ in 0..<events { try meter.track(tenant: tenant, metric: "api_calls") }
            while counters.snapshot.confirmed < batches { try await Task.sleep(for: .milliseconds(5)) }
            meter.shutdown()
            try await group.waitForAll()
        }
        let seconds = BenchSupport.seconds(ContinuousClock.now - start)
        let libraryBytes = Double(body.count * batches) / seconds
        print("publish: library \(BenchSupport.format(Double(events) / seconds)) events/s "
            + "(\(BenchSupport.format(libraryBytes / 1_048_576)) MiB/s) vs raw confirms of the same bodies pre-encoded "
            + "\(BenchSupport.format(rawBytes / Double(body.count) * 1000)) events/s (\(BenchSupport.format(rawBytes / 1_048_576)) MiB/s) "
            + "= \(String(format: "%.0f", 100 * libraryBytes / rawBytes))% of raw; the gap is track() and JSON encoding. "
            + "SPEC §7 needs ≥ 30k events/s end to end, of which this is the first stage")
    }
}

