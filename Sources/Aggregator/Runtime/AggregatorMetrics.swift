import Foundation
import Synchronization
import TallyMessaging
import TallyRuntime

/// The Aggregator's counters and gauges, shared by its consumers and served on
/// `/metrics` in Prometheus text format.
final class AggregatorMetrics: QueueWorkerObserver {
    struct Snapshot: Sendable {
        var eventsReceived = 0
        var eventsInserted = 0
        var eventsDuplicate = 0
        var eventsParked = 0
        var messagesParked = 0
        var messagesRetried = 0
        var batches = 0
        var lastBatchEvents = 0
        var commitSeconds = Histogram(bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])
        var visibleSeconds = Histogram(bounds: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
        var queueDepth = 0
        var databaseFailures = 0
        /// Inserted events per second over the last `window` seconds.
        var recent: [(second: Int, events: Int)] = []
        /// Seconds spent per phase of committed batches (decode, lock_and_configuration, …).
        var phaseSeconds: [String: Double] = [:]
    }

    /// A cumulative Prometheus histogram.
    struct Histogram: Sendable {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0

        init(bounds: [Double]) {
            self.bounds = bounds
            self.counts = Array(repeating: 0, count: bounds.count)
        }

        mutating func observe(_ value: Double) {
            for (index, bound) in bounds.enumerated() where value <= bound { counts[index] += 1 }
            sum += value
            count += 1
        }
    }

    private let state = Mutex(Snapshot())
    static let window = 10

    var snapshot: Snapshot { state.withLock { $0 } }

    func received(_ events: Int) {
        state.withLock { $0.eventsReceived += events }
    }

    /// One committed batch.
    func committed(_ outcome: LedgerOutcome, seconds: Double, visibleAfter: Double?, now: Date = Date()) {
        state.withLock { state in
            state.eventsInserted += outcome.inserted
            state.eventsDuplicate += outcome.duplicates
            state.eventsParked += outcome.parked
            state.batches += 1
            state.lastBatchEvents = outcome.inserted + outcome.duplicates + outcome.parked
            state.commitSeconds.observe(seconds)
            for (phase, seconds) in outcome.phases { state.phaseSeconds[phase.rawValue, default: 0] += seconds }
            if let visibleAfter { state.visibleSeconds.observe(visibleAfter) }
            let second = Int(now.timeIntervalSince1970)
            if state.recent.last?.second == second {
                state.recent[state.recent.count - 1].events += outcome.inserted
            } else {
                state.recent.append((second, outcome.inserted))
            }
            state.recent.removeAll { $0.second <= second - Self.window }
        }
    }

    func parked(_ count: Int) { state.withLock { $0.messagesParked += count } }
    func retried(_ count: Int) { state.withLock { $0.messagesRetried += count } }
    func workFailed(_ failure: WorkFailure) { state.withLock { $0.databaseFailures += 1 } }
    func queueDepth(_ depth: Int) { state.withLock { $0.queueDepth = depth } }

    /// The exposition text of `/metrics`.
    func render(now: Date = Date()) -> String {
        let s = snapshot
        let second = Int(now.timeIntervalSince1970)
        let recentEvents = s.recent.filter { $0.second > second - Self.window }.reduce(0) { $0 + $1.events }
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: some CustomStringConvertible) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            for (bound, count) in zip(h.bounds, h.counts) { text += "\(name)_bucket{le=\"\(bound)\"} \(count)\n" }
            text += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n\(name)_sum \(h.sum)\n\(name)_count \(h.count)\n"
        }
        metric("tally_aggregator_events_received_total", "counter", "Usage events read from the queue", s.eventsReceived)
        metric("tally_aggregator_events_inserted_total", "counter", "Usage events counted for the first time", s.eventsInserted)
        metric("tally_aggregator_events_duplicate_total", "counter", "Usage events already counted (skipped)", s.eventsDuplicate)
        metric("tally_aggregator_events_parked_total", "counter", "Usage events parked in parked_events", s.eventsParked)
        metric("tally_aggregator_messages_parked_total", "counter", "Messages sent to the parking-lot queue", s.messagesParked)
        metric("tally_aggregator_messages_retried_total", "counter", "Messages sent to a retry queue", s.messagesRetried)
        metric("tally_aggregator_batches_total", "counter", "Committed batch transactions (a batch written in parts counts each part)", s.batches)
        metric("tally_aggregator_database_failures_total", "counter", "Failed batch transactions", s.databaseFailures)
        metric("tally_aggregator_batch_events", "gauge", "Events in the last committed batch transaction", s.lastBatchEvents)
        metric(
            "tally_aggregator_events_per_second", "gauge", "Events counted per second over the last 10 s",
            Double(recentEvents) / Double(Self.window))
        metric("tally_aggregator_queue_depth", "gauge", "Messages ready in the usage queue (queue lag)", s.queueDepth)
        histogram("tally_aggregator_commit_seconds", "Time to write and commit one batch transaction", s.commitSeconds)
        text += "# HELP tally_aggregator_batch_phase_seconds_total Time spent per phase of committed batches\n"
        text += "# TYPE tally_aggregator_batch_phase_seconds_total counter\n"
        for phase in UsageLedger.Phase.allCases {
            text += "tally_aggregator_batch_phase_seconds_total{phase=\"\(phase.rawValue)\"} \(s.phaseSeconds[phase.rawValue] ?? 0)\n"
        }
        histogram(
            "tally_aggregator_event_visible_seconds", "From the earliest event time of a batch to its commit",
            s.visibleSeconds)
        return text
    }
}
