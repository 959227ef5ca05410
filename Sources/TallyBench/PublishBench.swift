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
    static let configuration = CommandConfiguration(
        commandName: "publish", abstract: "Publish throughput vs raw confirms.",
        discussion:
            "Empties aggregator.usage on the broker AMQP_URL names between runs: refused unless TALLY_BENCH_PURGES=1 (./ops/local.sh bench sets it).")
    @Option var events = 300_000

    func run() async throws {
        let broker = try BenchSupport.broker()
        let tenant = UUID()
        let sample = (0..<1000).map { _ in UsageEvent(id: EventID.make(), tenantID: tenant, metric: "api_calls", quantity: 1, time: Date()) }
        let body = UsageBatch(events: sample).body
        let batches = events / 1000

        // Raw and library publisher alternate three times each (the broker's speed drifts
        // as its queue fills); the medians are compared.
        let prepared = (0..<batches).map { _ in UsageBatch(events: sample) }
        var rawRates: [Double] = []
        var publisherRates: [Double] = []
        var spooled = 0
        for _ in 0..<3 {
            try await BenchSupport.purgeUsageQueue(broker)
            rawRates.append(try await rawBytesPerSecond(body: body, batches: batches, broker: broker))
            try await BenchSupport.purgeUsageQueue(broker)
            let (rate, spooledNow) = try await publisherBytesPerSecond(prepared, bodyBytes: body.count, broker: broker)
            publisherRates.append(rate)
            spooled += spooledNow
        }
        let rawBytes = rawRates.sorted()[1]
        let publisherBytes = publisherRates.sorted()[1]
        print(
            "publish: library publisher \(BenchSupport.format(publisherBytes / 1_048_576)) MiB/s "
                + "(\(BenchSupport.format(publisherBytes / Double(body.count) * 1000)) events/s, spooled \(spooled)) "
                + "vs raw rabbitmq-c publish with confirms \(BenchSupport.format(rawBytes / 1_048_576)) MiB/s "
                + "= \(String(format: "%.0f", 100 * publisherBytes / rawBytes))% of raw per message byte (target ≥ 80%; "
                + "medians of 3 alternating runs: raw \(rawRates.map { BenchSupport.format($0 / 1_048_576) }.joined(separator: "/")), "
                + "library \(publisherRates.map { BenchSupport.format($0 / 1_048_576) }.joined(separator: "/")) MiB/s)")
        BenchSupport.record(
            "publish", "library publisher with confirms", value: publisherBytes / 1_048_576, unit: "MiB/s", raw: rawBytes / 1_048_576,
            rawLabel: "rabbitmq-c publish with confirms", target: "≥ 80 % of raw")

        // End to end in the library: track() everything, then wait until every batch is confirmed.
        try await BenchSupport.purgeUsageQueue(broker)
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
        print(
            "publish: track() → confirmed \(BenchSupport.format(Double(events) / seconds)) events/s "
                + "(\(BenchSupport.format(libraryBytes / 1_048_576)) MiB/s, \(String(format: "%.0f", 100 * libraryBytes / rawBytes))% of raw; "
                + "the rest of the gap is track() and JSON encoding on the same 2 cores as the broker; "
                + "SPEC §7 needs ≥ 30k events/s end to end)")
        BenchSupport.record(
            "publish", "track() → confirmed", value: libraryBytes / 1_048_576, unit: "MiB/s", raw: rawBytes / 1_048_576,
            rawLabel: "rabbitmq-c publish with confirms")
    }

    /// The rabbitmq-c client alone: the same bodies, persistent and mandatory like the
    /// library's, `window` messages in flight per confirm wait — the most the library
    /// has in flight (4 submitters × 10 batches).
    func rawBytesPerSecond(body: [UInt8], batches: Int, broker: AMQPConfiguration) async throws -> Double {
        let window = 40
        let raw = try await AMQPConnection.connect(configuration: broker, logger: BenchSupport.logger)
        try await raw.openChannel(1, confirms: true)
        try await Topology.tally.declare(on: raw)
        let start = ContinuousClock.now
        for _ in 0..<(batches / window) {
            let messages = (0..<window).map { _ in
                OutgoingMessage(
                    exchange: ExchangeName.usage, routingKey: RoutingKey.usageV1, body: body,
                    properties: AMQPProperties(contentType: "application/json", messageID: EventID.make(), persistent: true),
                    mandatory: true)
            }
            _ = try await raw.publish(messages)
        }
        let seconds = BenchSupport.seconds(ContinuousClock.now - start)
        await raw.close()
        return Double(body.count * (batches / window) * window) / seconds
    }

    /// DurablePublisher (confirms, spool fallback) with batches encoded before the clock
    /// starts, from 4 concurrent submitters of 10 batches each.
    func publisherBytesPerSecond(_ prepared: [UsageBatch], bodyBytes: Int, broker: AMQPConfiguration) async throws -> (Double, Int) {
        let counters = MeteringCounters()
        let durable = DurablePublisher(
            configuration: broker, spool: try await BenchSupport.spool(), logger: BenchSupport.logger, counters: counters)
        let seconds = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await durable.run() }
            _ = try await durable.submit([prepared[0]])  // connect before the clock starts
            let start = ContinuousClock.now
            let submitters = 4
            try await withThrowingTaskGroup(of: Void.self) { submitting in
                for submitter in 0..<submitters {
                    submitting.addTask {
                        for first in stride(from: 1 + submitter * 10, to: prepared.count, by: submitters * 10) {
                            _ = try await durable.submit(Array(prepared[first..<min(first + 10, prepared.count)]))
                        }
                    }
                }
                try await submitting.waitForAll()
            }
            let seconds = BenchSupport.seconds(ContinuousClock.now - start)
            durable.finish()
            try await group.waitForAll()
            return seconds
        }
        return (Double(bodyBytes * (prepared.count - 1)) / seconds, counters.snapshot.spooled)
    }
}
