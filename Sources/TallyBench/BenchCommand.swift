import ArgumentParser
import CurlClient
import DiskSpool
import Foundation
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import TallyMessaging
import UsageEvents

/// `tally-bench`: the performance figures of SPEC §7, each printed beside the raw
/// limit measured in the same run. Run through `./ops/local.sh bench` (release build).
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-bench",
        abstract:
            "Measure track() overhead, publish, end-to-end, billing and notification throughput against the local stack (ingest: wrk), the Aggregator's drain rate by tenants mixed per batch (drain-fill, drain-wait), and a publisher's memory over a long run (soak).",
        subcommands: [
            TrackBench.self, PublishBench.self, PipelineBench.self, DrainFillBench.self, DrainWaitBench.self, BillingBench.self,
            NotifyBench.self, SoakBench.self, DashboardBench.self,
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

    /// One figure for `ops/bench/report.py`, which saves a run's figures as JSON and draws
    /// them: a `bench-json:` line beside the sentence a person reads. `raw` is the limit the
    /// figure is measured against in the same run (same unit), `target` what SPEC §7 or an
    /// issue asks, as text.
    static func record(
        _ phase: String, _ figure: String, value: Double, unit: String, raw: Double? = nil, rawLabel: String? = nil, target: String? = nil
    ) {
        var fields: [String: Any] = ["phase": phase, "figure": figure, "value": value, "unit": unit]
        if let raw { fields["raw"] = raw }
        if let rawLabel { fields["raw_label"] = rawLabel }
        if let target { fields["target"] = target }
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        print("bench-json: " + String(decoding: data, as: UTF8.self))
    }

    /// The raw limit of storing usage: `events` rows of `metric`, event i for tenant
    /// i % tenants.count, one time for all (a minute ago: one hour and one month a tenant),
    /// COPYed into a staging table and deduplicated as the schema does it (the ids first,
    /// then the events whose id was new), `perTransaction` a transaction. No rollups, period
    /// totals, locks or evaluation: what PostgreSQL alone takes for the events themselves.
    /// With several `connections` the transactions are dealt out among them and run side
    /// by side, as an Aggregator's consumers do. Rows per second, the encoding not timed.
    /// The rows stay; callers delete them.
    static func rawCopyDedup(
        events: Int, tenants: [UUID], metric: String, perTransaction: Int, connections: [PostgresConnection]
    ) async throws -> Double {
        let time = Date().addingTimeInterval(-60)
        var stamp: [UInt8] = []
        RFC3339.write(time, into: &stamp)
        let month = Array(stamp[0..<7]) + Array("-01".utf8)
        let tenantTexts = tenants.map(\.uuidString)
        var chunks: [[UInt8]] = []
        for chunk in stride(from: 0, to: events, by: perTransaction) {
            var writer = CopyTextWriter(reservingCapacity: perTransaction * 160)
            for index in chunk..<min(chunk + perTransaction, events) {
                for field in [tenantTexts[index % tenantTexts.count], "raw-\(EventID.make())-\(index)", metric, nil, "1", nil] { writer.field(field) }
                writer.field(utf8: stamp)
                writer.field(utf8: month)
                writer.field("{}")
                writer.field("bench")
                writer.endRow()
            }
            chunks.append(writer.buffer)
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, database) in connections.enumerated() {
                let mine = Array(chunks[index...].enumerated().filter { $0.offset % connections.count == 0 }.map(\.element))
                group.addTask { try await copyAndDedup(mine, on: database) }
            }
            try await group.waitForAll()
        }
        return Double(events) / seconds(ContinuousClock.now - start)
    }

    private static func copyAndDedup(_ chunks: [[UInt8]], on database: PostgresConnection) async throws {
        for chunk in chunks {
            try await database.withTransaction { connection in
                try connection.executeScript(
                    """
                    SET LOCAL client_min_messages = warning;
                    CREATE TEMP TABLE IF NOT EXISTS bench_staged (
                        tenant_id uuid, event_id text, metric text, name text, quantity numeric(17,4), unit text,
                        occurred_at timestamptz, occurred_month date, metadata jsonb, message_id text) ON COMMIT DELETE ROWS
                    """)
                _ = try connection.copyIn("COPY bench_staged FROM STDIN", text: chunk)
                try connection.query(
                    """
                    WITH fresh AS (
                        INSERT INTO usage_event_ids (tenant_id, event_id) SELECT tenant_id, event_id FROM bench_staged
                        ON CONFLICT DO NOTHING RETURNING tenant_id, event_id
                    )
                    INSERT INTO usage_events (tenant_id, event_id, metric, name, quantity, unit, occurred_at, occurred_month, metadata, message_id)
                    SELECT s.* FROM bench_staged s JOIN fresh f ON f.tenant_id = s.tenant_id AND f.event_id = s.event_id
                    """)
            }
        }
    }

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
    /// Refused unless `TALLY_BENCH_PURGES=1` (`./ops/local.sh bench` sets it): on a broker
    /// that is not the bench's own, the queue holds usage not counted yet.
    static func purgeUsageQueue(_ broker: AMQPConfiguration) async throws {
        guard ProcessInfo.processInfo.environment["TALLY_BENCH_PURGES"] == "1" else {
            throw ValidationError(
                "this benchmark empties \(QueueName.aggregatorUsage) on the broker AMQP_URL names, and with it any usage not "
                    + "counted yet: run it through ./ops/local.sh bench, or set TALLY_BENCH_PURGES=1 on a broker of its own")
        }
        let connection = try await AMQPConnection.connect(configuration: broker, logger: logger)
        try await connection.openChannel(1)
        try await connection.purgeQueue(QueueName.aggregatorUsage)
        await connection.close()
    }
}

extension BenchSupport {
    /// The phases of a batch in the Aggregator, in order (`tally_aggregator_batch_phase_seconds_total`).
    static let phases = ["decode", "copy", "lock_and_configuration", "complete_periods", "insert_and_roll_up", "evaluate", "commit"]

    /// The Aggregator's seconds per batch phase, from its `/metrics`.
    static func aggregatorPhases(_ url: String) async throws -> [String: Double] {
        let response = try await HTTPClient().send(.init(url: url))
        var phases: [String: Double] = [:]
        let prefix = "tally_aggregator_batch_phase_seconds_total{phase=\""
        for line in String(decoding: response.body, as: UTF8.self).split(separator: "\n") where line.hasPrefix(prefix) {
            let name = line.dropFirst(prefix.count).prefix { $0 != "\"" }
            phases[String(name)] = Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return phases
    }

    /// The sum of the Aggregator's counters `names` (e.g. `tally_aggregator_events_inserted_total`),
    /// from its `/metrics`.
    static func aggregatorCounters(_ url: String, _ names: [String]) async throws -> Double {
        let response = try await HTTPClient().send(.init(url: url))
        var total = 0.0
        for line in String(decoding: response.body, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, names.contains(String(parts[0])) else { continue }
            total += Double(parts[1]) ?? 0
        }
        return total
    }

    /// Events the Aggregator has committed (counted, skipped as duplicates or parked).
    static let settledCounters = [
        "tally_aggregator_events_inserted_total", "tally_aggregator_events_duplicate_total", "tally_aggregator_events_parked_total",
    ]

    /// Waits until the Aggregator at `url` has settled `count` events more than `baseline`
    /// (`settledCounters`). A scrape of its `/metrics` costs the database nothing, where a
    /// count of the stored events every few milliseconds takes CPU from the Aggregator
    /// being measured (they share 2 cores); callers confirm with one query at the end.
    static func waitForSettled(_ count: Int, after baseline: Double, metrics url: String, within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await aggregatorCounters(url, settledCounters) - baseline >= Double(count) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ValidationError("the Aggregator did not settle \(count) events within \(limit); is it running? (.local/log)")
    }

    /// "decode 1.20 s (12%), …": consumer-seconds in batches, all consumers together.
    static func phaseBreakdown(_ phases: [String: Double]) -> String {
        let busy = phases.values.reduce(0, +)
        return "(consumer-seconds in batches, all consumers) "
            + Self.phases.map {
                "\($0) \(String(format: "%.2f", phases[$0] ?? 0)) s (\(String(format: "%.0f", 100 * (phases[$0] ?? 0) / max(busy, 1e-9)))%)"
            }
            .joined(separator: ", ")
            + "; in batches \(String(format: "%.1f", busy)) s — the rest of each consumer's time is receiving, acking and waiting"
    }
}
