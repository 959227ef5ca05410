import DiskSpool
import Hummingbird
import Metering
import NIOCore
import TallyRuntime
import TallyStore

/// `/metrics` in Prometheus text format: the metering counters and the spool depth.
struct MetricsRoute: Sendable {
    let counters: MeteringCounters
    let spool: DiskSpool
    let authentication: APIKeyAuthenticator

    func register(on router: Router<IngestRequestContext>) {
        router.get("metrics") { _, _ -> Response in
            let snapshot = counters.snapshot
            var text = PrometheusText()
            text.metric("tally_producer_batches_published_total", "counter", "Usage batches published to RabbitMQ", snapshot.published)
            text.metric("tally_producer_batches_confirmed_total", "counter", "Usage batches confirmed by RabbitMQ", snapshot.confirmed)
            text.metric("tally_producer_batches_spooled_total", "counter", "Usage batches written to the disk spool", snapshot.spooled)
            text.metric("tally_producer_batches_drained_total", "counter", "Spooled batches published later", snapshot.drained)
            text.metric(
                "tally_producer_batches_dead_lettered_total", "counter",
                "Spooled batches the broker kept refusing, set aside in the spool's dead-letter file", snapshot.deadLettered)
            text.metric(
                "tally_producer_spool_write_failures_total", "counter",
                "Spool appends that failed (disk full, I/O error); nothing of them was kept", snapshot.spoolWriteFailures)
            text.metric("tally_producer_events_dropped_total", "counter", "Accepted events lost (always 0)", snapshot.dropped)
            text.metric("tally_producer_spool_batches", "gauge", "Batches waiting in the disk spool", spool.unacknowledgedRecordCount)
            text.authentication(authentication.counters)
            return Response(
                status: .ok, headers: [.contentType: PrometheusText.contentType], body: .init(byteBuffer: ByteBuffer(string: text.text)))
        }
    }
}
