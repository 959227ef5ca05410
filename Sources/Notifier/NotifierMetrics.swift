import Foundation
import Synchronization
import TallyMessaging
import TallyRuntime

/// The Notifier's counters, per channel (`email`, `webhook`), served on `/metrics`.
final class NotifierMetrics: Sendable {
    struct Counts: Sendable {
        var sent: [String: Int] = [:]
        var failed: [String: Int] = [:]
        var skipped: [String: Int] = [:]
        /// Webhooks not tried because their endpoint hung lately (`EndpointCooling`).
        var cooled = 0
        /// Parked undelivered, by channel and by kind of event: `invoice` (finalized,
        /// adjustment, payment failed) or `alert` (usage alerts, quota exceeded).
        var parked: [ParkedKey: Int] = [:]
        var events = 0
        /// The mail server was unreachable at the last attempt (readiness says so).
        var mailServerDown = false
    }

    struct ParkedKey: Hashable, Sendable {
        let channel: String
        let kind: String
    }

    static let channels = ["email", "webhook"]
    static let kinds = ["invoice", "alert"]

    private let counts = Mutex(Counts())
    /// The billing-event consumers' loop (the `QueueWorker`'s observer).
    let worker = WorkerLoopCounters()

    var snapshot: Counts { counts.withLock { $0 } }

    func event() { counts.withLock { $0.events += 1 } }
    func sent(_ channel: String) { counts.withLock { $0.sent[channel, default: 0] += 1 } }
    func failed(_ channel: String) { counts.withLock { $0.failed[channel, default: 0] += 1 } }
    func skipped(_ channel: String) { counts.withLock { $0.skipped[channel, default: 0] += 1 } }
    func cooledWebhooks(_ count: Int) { counts.withLock { $0.cooled += count } }
    func parked(channel: String, eventType: String, _ count: Int) {
        let kind = eventType.hasPrefix("invoice.") ? "invoice" : "alert"
        counts.withLock { $0.parked[ParkedKey(channel: channel, kind: kind), default: 0] += count }
    }
    func mailServer(up: Bool) { counts.withLock { $0.mailServerDown = !up } }

    /// Prometheus text exposition.
    func render() -> String {
        let s = snapshot
        var text = PrometheusText()
        func byChannel(_ name: String, _ help: String, _ counts: [String: Int]) {
            text.family(name, "counter", help, Self.channels.map { ([("channel", $0)], "\(counts[$0] ?? 0)") })
        }
        byChannel("tally_notifier_sent_total", "Notifications the mail server or webhook receiver accepted", s.sent)
        byChannel("tally_notifier_failed_total", "Failed delivery attempts (each is retried, or parked after the last)", s.failed)
        byChannel("tally_notifier_skipped_total", "Notifications already sent before a redelivery (not sent again)", s.skipped)
        text.family(
            "tally_notifier_parked_total", "counter",
            "Notifications whose event was parked undelivered, by channel and kind (invoice: invoice emails and webhooks; alert: usage alerts)",
            Self.channels.flatMap { channel in
                Self.kinds.map { kind in ([("channel", channel), ("kind", kind)], "\(s.parked[ParkedKey(channel: channel, kind: kind)] ?? 0)") }
            })
        text.metric("tally_notifier_events_total", "counter", "Billing events processed", s.events)
        text.metric(
            "tally_notifier_webhooks_cooled_total", "counter",
            "Webhook deliveries not tried because their endpoint hung less than a minute before (retried later)", s.cooled)
        worker.render(
            into: &text, prefix: "tally_notifier", messages: "Billing events", dependencies: "the database or mail server", queue: "the queue")
        text.metric(
            "tally_notifier_mail_server_up", "gauge", "1 unless the last email attempt could not reach the mail server", s.mailServerDown ? 0 : 1)
        return text.text
    }
}
