import ArgumentParser
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
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-bench",
        abstract: "Measure track() overhead, publish, end-to-end, billing and notification throughput against the local stack (ingest: wrk), the Aggregator's drain rate by tenants mixed per batch (drain-fill, drain-wait), and a publisher's memory over a long run (soak).",
        subcommands: [
            TrackBench.self, PublishBench.self, PipelineBench.self, DrainFillBench.self, DrainWaitBench.self, BillingBench.self,
            NotifyBench.self, SoakBench.self,
        ]
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

    /// Peak resident set size of process `pid` in KiB (VmHWM), nil when it cannot be read
    /// (the process is gone, or not on Linux).
    static func peakRSS(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    /// Empties `aggregator.usage` between phases: benchmark usage is not real usage, and
    /// a queue filling with hundreds of megabytes slows the broker the next phase measures.
    static func purgeUsageQueue(_ broker: AMQPConfiguration) async throws {
        let connection = try await AMQPConnection.connect(configuration: broker, logger: logger)
        try await connection.openChannel(1)
        try await connection.purgeQueue(QueueName.aggregatorUsage)
        await connection.close()
    }
}

