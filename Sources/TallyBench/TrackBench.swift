import ArgumentParser
import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import UsageEvents

/// p50/p99/p999 of `track()` over 1M calls from 8 concurrent tasks.
struct TrackBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "track", abstract: "track() in-process overhead.")
    @Option var calls = 1_000_000
    @Option var tasks = 8

    func run() async throws {
        let spool = try await BenchSupport.spool()
        let counters = MeteringCounters()
        let publisher = DurablePublisher(configuration: try BenchSupport.broker(), spool: spool, logger: BenchSupport.logger, counters: counters)
        var options = Meter.Options()
        options.memoryLimit = calls * 2
        let meter = Meter(publisher: publisher, counters: counters, options: options, logger: BenchSupport.logger)
        let tenant = UUID()
        let perTask = calls / tasks
        let samples = try await withThrowingTaskGroup(of: [Int64].self) { group in
            group.addTask {
                await meter.run()
                return []
            }
            for _ in 0..<tasks {
                group.addTask {
                    var durations = [Int64]()
                    durations.reserveCapacity(perTask)
                    let clock = ContinuousClock()
                    for _ in 0..<perTask {
                        let start = clock.now
                        try meter.track(tenant: tenant, metric: "api_calls")
                        let elapsed = clock.now - start
                        durations.append(elapsed.components.attoseconds / 1_000_000_000 + elapsed.components.seconds * 1_000_000_000)
                    }
                    return durations
                }
            }
            var all: [Int64] = []
            for _ in 0..<tasks { all += try await group.next() ?? [] }
            meter.shutdown()
            try await group.waitForAll()
            return all.sorted()
        }
        func percentile(_ p: Double) -> Double { Double(samples[min(samples.count - 1, Int(Double(samples.count) * p))]) / 1000 }
        print(
            "track(): \(samples.count) calls from \(tasks) tasks: p50 \(String(format: "%.2f", percentile(0.5))) µs, "
                + "p99 \(String(format: "%.2f", percentile(0.99))) µs, p999 \(String(format: "%.2f", percentile(0.999))) µs "
                + "(target p99 ≤ 20 µs; the seed promised < 10 ms)")
        print("  published \(counters.snapshot.confirmed) batches confirmed, dropped \(counters.snapshot.dropped)")
        BenchSupport.record("track", "track() overhead, p99", value: percentile(0.99), unit: "µs", target: "≤ 20 µs")
    }
}
