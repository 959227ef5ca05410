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
        var parked: [String: Int] = [:]
        var events = 0
        /// The mail server was unreachable at the last attempt (readiness says so).
        var mailServerDown = false
    }

    private let counts = Mutex(Counts())
    /// The billing-event consumers' loop (the `QueueWorker`'s observer).
    let worker = WorkerLoopCounters()

    var snapshot: Counts { counts.withLock { $0 } }

    func event() { counts.withLock { $0.events += 1 } }
    func sent(_ channel: String) { counts.withLock { $0.sent[channel, default: 0] += 1 } }
    func failed(_ channel: String) { counts.withLock { $0.failed[channel, default: 0] += 1 } }
    func skipped(_ channel: String) { counts.withLock { $0.skipped[channel, default: 0] += 1 } }
    func parked(channel: String, _ count: Int) { counts.withLock { $0.parked[channel, default: 0] += count } }
    func mailServer(up: Bool) { counts.withLock { $0.mailServerDown = !up } }


    /// Prometheus text exposition.
    func render() -> String {
        let s = snapshot
        var text = ""
        func counter(_ name: String, _ help: String, _ byChannel: [String: Int]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) counter\n"
            for channel in ["email", "webhook"] { text += "\(name){channel=\"\(channel)\"} \(byChannel[channel] ?? 0)\n" }
        }
        func metric(_ name: String, _ type: String, _ help: String, _ value: Int) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        counter("tally_notifier_sent_total", "Notifications the mail server or webhook receiver accepted", s.sent)
        counter("tally_notifier_failed_total", "Failed delivery attempts (each is retried, or parked after the last)", s.failed)
        counter("tally_notifier_skipped_total", "Notifications already sent before a redelivery (not sent again)", s.skipped)
        counter("tally_notifier_parked_total", "Notifications whose event was parked undelivered", s.parked)
        metric("tally_notifier_events_total", "counter", "Billing events processed", s.events)
        text += worker.render(prefix: "tally_notifier", messages: "Billing events", dependencies: "the database or mail server", queue: "the queue")
        metric("tally_notifier_mail_server_up", "gauge", "1 unless the last email attempt could not reach the mail server", s.mailServerDown ? 0 : 1)
        return text
    }
}
