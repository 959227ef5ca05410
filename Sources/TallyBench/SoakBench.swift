import ArgumentParser
import CurlClient
import Foundation
import RabbitMQClient
import Synchronization
import UsageEvents

/// A long run that watches a publisher's memory: many events, one confirm each, with the
/// resident set size sampled from `/proc/PID/status` as it goes.
///
/// With `--ingest-url` and `--pid` it sends NDJSON to a running `producer serve` and
/// watches that process (the issue's 10 M events). Without them it publishes in this
/// process with confirms to a private exchange with no queue (the broker confirms and
/// drops each message: nothing reaches the Aggregator) and watches itself.
struct SoakBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "Publish many events and sample the publisher's RSS (start, every tenth, end).",
        discussion: """
            Against a producer: tally-bench soak --events 10000000 --ingest-url $TALLY_INGEST_URL \\
              --pid $(cat .local/run/producer.pid) --tenant TENANT_UUID   (BILLING_ADMIN_TOKEN from the environment)
            In process: tally-bench soak --events 1000000   (AMQP_URL from the environment)
            """)

    @Option(help: "Events to send in all.") var events = 10_000_000
    @Option(help: "Events per HTTP request, or per AMQP message in process (1: one confirm per event).") var perMessage = 1
    @Option(help: "Concurrent HTTP clients, or messages in flight per confirm wait in process.") var concurrency = 8
    @Option(help: "RSS samples over the run (besides the first).") var samples = 10
    @Option(help: "The ingest service, e.g. http://127.0.0.1:8080 (with --pid and --tenant).") var ingestURL: String?
    @Option(help: "The pid of that producer, whose /proc/PID/status is sampled.") var pid: Int32?
    @Option(help: "A tenant of your own that the producer knows (events name it).") var tenant: String?

    func validate() throws {
        guard events > 0, perMessage > 0, concurrency > 0, samples > 0 else { throw ValidationError("counts must be positive") }
        guard (ingestURL == nil) == (pid == nil), (ingestURL == nil) == (tenant == nil) else {
            throw ValidationError("--ingest-url, --pid and --tenant go together")
        }
        if let tenant, UUID(uuidString: tenant) == nil { throw ValidationError("--tenant must be a tenant id (UUID)") }
    }

    func run() async throws {
        let watched = pid ?? getpid()
        var table = RSSTable(pid: watched)
        try table.sample(sent: 0)
        let start = ContinuousClock.now
        let step = max(1, events / samples)
        if let ingestURL, let tenant = tenant.flatMap(UUID.init(uuidString:)) {
            try await sendThroughIngest(url: ingestURL, tenant: tenant, step: step, table: &table)
        } else {
            try await publishInProcess(step: step, table: &table)
        }
        let seconds = BenchSupport.seconds(ContinuousClock.now - start)
        table.print(events: events, seconds: seconds, perMessage: perMessage, what: ingestURL == nil ? "in-process publisher" : "producer \(watched)")
    }

    /// NDJSON requests of `perMessage` events from `concurrency` clients, `step` events per round.
    private func sendThroughIngest(url: String, tenant: UUID, step: Int, table: inout RSSTable) async throws {
        guard let token = ProcessInfo.processInfo.environment["BILLING_ADMIN_TOKEN"] else {
            throw ValidationError("BILLING_ADMIN_TOKEN is not set: source .local/env")
        }
        let clients = try (0..<concurrency).map { _ in try HTTPClient() }
        var sent = 0
        while sent < events {
            let round = min(step, events - sent)
            let requests = (round + perMessage - 1) / perMessage
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        for request in stride(from: index, to: requests, by: clients.count) {
                            let count = min(perMessage, round - request * perMessage)
                            try await Self.post(count: count, tenant: tenant, to: url, token: token, client: client)
                        }
                    }
                }
                try await group.waitForAll()
            }
            sent += round
            try table.sample(sent: sent)
        }
    }

    private static func post(count: Int, tenant: UUID, to url: String, token: String, client: HTTPClient) async throws {
        let time = RFC3339.format(Date())
        let lines = (0..<count).map { _ in
            #"{"id":"\#(EventID.make())","tenant_id":"\#(tenant.uuidString.lowercased())","type":"api_calls","quantity":1,"time":"\#(time)"}"#
        }
        let request = HTTPClient.Request(
            method: .post, url: url + "/v1/events",
            headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/x-ndjson"],
            body: Data(lines.joined(separator: "\n").utf8), timeout: .seconds(60))
        let response = try await client.send(request)
        guard response.status == 202 else {
            throw ValidationError("ingest answered \(response.status): \(String(decoding: response.body.prefix(500), as: UTF8.self))")
        }
    }

    /// Messages of `perMessage` events, `concurrency` per confirm wait, to a private
    /// exchange nothing is bound to (confirmed, then dropped by the broker).
    private func publishInProcess(step: Int, table: inout RSSTable) async throws {
        let broker = try BenchSupport.broker()
        let connection = try await AMQPConnection.connect(configuration: broker, logger: BenchSupport.logger)
        let exchange = "tally.bench.soak.\(UUID().uuidString.prefix(8).lowercased())"
        try await connection.openChannel(1, confirms: true)
        try await connection.declareExchange(exchange, type: .topic, durable: false)
        let tenant = UUID()
        let body = JSONWriter.encode(
            (0..<perMessage).map { _ in
                UsageEvent(id: EventID.make(), tenantID: tenant, metric: "api_calls", quantity: 1, time: Date())
            })
        var sent = 0
        var nextSample = step
        while sent < events {
            let messages = (0..<concurrency).map { _ in
                OutgoingMessage(
                    exchange: exchange, routingKey: "usage.v1", body: body,
                    properties: AMQPProperties(contentType: "application/json", messageID: EventID.make(), persistent: true),
                    mandatory: false)
            }
            let outcomes = try await connection.publish(messages)
            guard outcomes.allSatisfy({ $0 == .confirmed }) else { throw ValidationError("the broker did not confirm: \(outcomes)") }
            sent += concurrency * perMessage
            if sent >= nextSample || sent >= events {
                try table.sample(sent: min(sent, events))
                nextSample += step
            }
        }
        try await connection.deleteExchange(exchange)
        await connection.close()
    }
}

/// RSS samples of one process, from `/proc/PID/status`.
struct RSSTable {
    let pid: Int32
    private(set) var rows: [(sent: Int, rssKiB: Int, peakKiB: Int)] = []

    init(pid: Int32) {
        self.pid = pid
    }

    mutating func sample(sent: Int) throws {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else {
            throw ValidationError("cannot read /proc/\(pid)/status: is the process running?")
        }
        func kibibytes(_ field: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
            return Int(line.split(whereSeparator: \.isWhitespace).dropFirst().first ?? "") ?? -1
        }
        rows.append((sent, kibibytes("VmRSS"), kibibytes("VmHWM")))
    }

    func print(events: Int, seconds: Double, perMessage: Int, what: String) {
        let rate = BenchSupport.format(Double(events) / seconds)
        Swift.print(
            "soak: \(events) events, \(perMessage) per message, through the \(what) in \(String(format: "%.0f", seconds)) s (\(rate) events/s)")
        for row in rows {
            Swift.print("  after \(row.sent) events: RSS \(row.rssKiB / 1024) MiB (peak \(row.peakKiB / 1024) MiB)")
        }
        guard let first = rows.first, let last = rows.last else { return }
        let middle = rows[rows.count / 2]
        Swift.print("  start/mid/end RSS: \(first.rssKiB / 1024) / \(middle.rssKiB / 1024) / \(last.rssKiB / 1024) MiB")
    }
}
