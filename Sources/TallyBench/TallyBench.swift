import ArgumentParser
import CurlClient
import DiskSpool
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import UsageEvents

/// `tally-bench`: the performance figures of SPEC §7, each printed beside the raw
/// limit measured in the same run. Run through `./ops/local.sh bench` (release build).
@main
struct TallyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-bench",
        abstract: "Measure track() overhead, publish throughput and ingest throughput against the local stack.",
        subcommands: [TrackBench.self, PublishBench.self, IngestBench.self]
    )
}

enum BenchSupport {
    static let logger: Logger = {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        return logger
    }()

    static func broker() throws -> AMQPConfiguration {
        guard let url = ProcessInfo.processInfo.environment["AMQP_URL"] else {
            throw ValidationError("AMQP_URL is not set: run through ./ops/local.sh bench, or source .local/env")
        }
        return try AMQPConfiguration(url: url, connectionName: "tally-bench")
    }

    static func spool() async throws -> DiskSpool {
        try await DiskSpool.open(
            directory: FileManager.default.temporaryDirectory.appendingPathComponent("bench-spool-\(UUID())").path,
            maxBytes: 4 << 30)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func format(_ value: Double) -> String { String(format: "%.0f", value) }
}

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
        print("track(): \(samples.count) calls from \(tasks) tasks: p50 \(String(format: "%.2f", percentile(0.5))) µs, "
            + "p99 \(String(format: "%.2f", percentile(0.99))) µs, p999 \(String(format: "%.2f", percentile(0.999))) µs "
            + "(target p99 ≤ 20 µs; the seed promised < 10 ms)")
        print("  published \(counters.snapshot.confirmed) batches confirmed, dropped \(counters.snapshot.dropped)")
    }
}

/// Library publish throughput with confirms against raw publish-with-confirms of the same bodies.
struct PublishBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "publish", abstract: "Publish throughput vs raw confirms.")
    @Option var events = 300_000

    func run() async throws {
        let broker = try BenchSupport.broker()
        let tenant = UUID()
        let sample = (0..<1000).map { _ in UsageEvent(id: EventID.make(), tenantID: tenant, metric: "api_calls", quantity: 1, time: Date()) }
        let body = try UsageBatch(events: sample).body
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
            + "(\(BenchSupport.format(libraryBytes / 1_048_576)) MiB/s) vs raw confirms \(BenchSupport.format(rawBytes / 1_048_576)) MiB/s "
            + "= \(String(format: "%.0f", 100 * libraryBytes / rawBytes))% of raw per byte (target ≥ 80%)")
    }
}

/// Ingest HTTP throughput with 1000-event batches, several clients at once.
struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "POST /v1/events throughput.")
    @Option(help: "The ingest service to load.") var url: String
    @Option var events = 200_000
    @Option var clients = 8

    func run() async throws {
        guard let token = ProcessInfo.processInfo.environment["BILLING_ADMIN_TOKEN"] else {
            throw ValidationError("BILLING_ADMIN_TOKEN is not set")
        }
        guard let tenant = ProcessInfo.processInfo.environment["TALLY_BENCH_TENANT"] else {
            throw ValidationError("TALLY_BENCH_TENANT (a tenant id) is not set")
        }
        let time = RFC3339.format(Date().addingTimeInterval(-10))
        let requests = events / 1000
        let start = ContinuousClock.now
        let accepted = try await withThrowingTaskGroup(of: Int.self) { group in
            for client in 0..<clients {
                group.addTask {
                    let http = try HTTPClient()
                    var accepted = 0
                    for request in stride(from: client, to: requests, by: clients) {
                        let lines = (0..<1000).map {
                            #"{"id":"bench-\#(request)-\#($0)-\#(UUID().uuidString.prefix(8))","tenant_id":"\#(tenant)","type":"api_calls","quantity":1,"time":"\#(time)"}"#
                        }
                        let response = try await http.send(
                            .init(
                                method: .post, url: url + "/v1/events",
                                headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/x-ndjson"],
                                body: Data(lines.joined(separator: "\n").utf8), timeout: .seconds(60)))
                        if response.status == 202 { accepted += 1000 }
                    }
                    return accepted
                }
            }
            return try await group.reduce(0, +)
        }
        let seconds = BenchSupport.seconds(ContinuousClock.now - start)
        print("ingest: \(accepted) events accepted in \(String(format: "%.1f", seconds)) s = "
            + "\(BenchSupport.format(Double(accepted) / seconds)) events/s with 1000-event batches, \(clients) clients (target ≥ 50k/s)")
    }
}
