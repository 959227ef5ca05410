import DiskSpool
import Hummingbird
import Metering
import NIOCore
import TallyStore

/// `/metrics` in Prometheus text format: the metering counters and the spool depth.
struct MetricsRoute: Sendable {
    let counters: MeteringCounters
    let spool: DiskSpool
    let authentication: APIKeyAuthenticator

    func register(on router: Router<IngestRequestContext>) {
        router.get("metrics") { _, _ -> Response in
            let snapshot = counters.snapshot
            let spooled = spool.unacknowledgedRecordCount
            let lines = [
                counter("tally_producer_batches_published_total", "Usage batches published to RabbitMQ", snapshot.published),
                counter("tally_producer_batches_confirmed_total", "Usage batches confirmed by RabbitMQ", snapshot.confirmed),
                counter("tally_producer_batches_spooled_total", "Usage batches written to the disk spool", snapshot.spooled),
                counter("tally_producer_batches_drained_total", "Spooled batches published later", snapshot.drained),
                counter(
                    "tally_producer_batches_dead_lettered_total",
                    "Spooled batches the broker kept refusing, set aside in the spool's dead-letter file", snapshot.deadLettered),
                counter(
                    "tally_producer_spool_write_failures_total", "Spool appends that failed (disk full, I/O error); nothing of them was kept",
                    snapshot.spoolWriteFailures),
                counter("tally_producer_events_dropped_total", "Accepted events lost (always 0)", snapshot.dropped),
                gauge("tally_producer_spool_batches", "Batches waiting in the disk spool", spooled),
            ] + authenticationLines()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: lines.joined())))
        }
    }

    /// 401s by reason, and key lookups that reached the database.
    private func authenticationLines() -> [String] {
        let counts = authentication.counters
        let name = "tally_http_unauthorized_total"
        return [
            "# HELP \(name) Requests answered 401, by reason\n# TYPE \(name) counter\n"
                + "\(name){reason=\"missing_token\"} \(counts.missingToken)\n"
                + "\(name){reason=\"malformed_token\"} \(counts.malformedToken)\n"
                + "\(name){reason=\"unknown_key\"} \(counts.unknownKey)\n",
            counter("tally_http_api_key_lookups_total", "API keys looked up in the database (cache misses)", counts.lookups),
        ]
    }

    private func counter(_ name: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name) \(value)\n"
    }

    private func gauge(_ name: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(value)\n"
    }
}
