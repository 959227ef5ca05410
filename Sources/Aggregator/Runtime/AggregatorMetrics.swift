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
        var messagesRequeued = 0
        var batches = 0
        var lastBatchEvents = 0
        var commitSeconds = PrometheusText.Histogram(bounds: AggregatorMetrics.commitBounds)
        var visibleSeconds = PrometheusText.Histogram(bounds: AggregatorMetrics.visibleBounds)
        var queueDepth = 0
        var databaseFailures = 0
        /// Inserted events per second over the last `window` seconds.
        var recent: [(second: Int, events: Int)] = []
        /// Seconds spent per phase of committed batches (decode, lock_and_configuration, …).
        var phaseSeconds: [String: Double] = [:]
    }

    private let state = Mutex(Snapshot())
    /// The consumers' configuration cache, whose loads and restarts `/metrics` shows.
    let configCache: UsageConfigCache?
    static let window = 10
    static let commitBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
    static let visibleBounds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    init(configCache: UsageConfigCache? = nil) {
        self.configCache = configCache
    }

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
    func requeued(_ count: Int) { state.withLock { $0.messagesRequeued += count } }
    func workFailed(_ failure: WorkFailure) { state.withLock { $0.databaseFailures += 1 } }
    func queueDepth(_ depth: Int) { state.withLock { $0.queueDepth = depth } }

    /// The exposition text of `/metrics`.
    func render(now: Date = Date()) -> String {
        let s = snapshot
        let second = Int(now.timeIntervalSince1970)
        let recentEvents = s.recent.filter { $0.second > second - Self.window }.reduce(0) { $0 + $1.events }
        var text = PrometheusText()
        text.metric("tally_aggregator_events_received_total", "counter", "Usage events read from the queue", s.eventsReceived)
        text.metric("tally_aggregator_events_inserted_total", "counter", "Usage events counted for the first time", s.eventsInserted)
        text.metric("tally_aggregator_events_duplicate_total", "counter", "Usage events already counted (skipped)", s.eventsDuplicate)
        text.metric("tally_aggregator_events_parked_total", "counter", "Usage events parked in parked_events", s.eventsParked)
        text.metric("tally_aggregator_messages_parked_total", "counter", "Messages sent to the parking-lot queue", s.messagesParked)
        text.metric("tally_aggregator_messages_retried_total", "counter", "Messages sent to a retry queue", s.messagesRetried)
        text.metric(
            "tally_aggregator_messages_requeued_total", "counter", "Messages of a failed batch put back in the work queue (bodies released)",
            s.messagesRequeued)
        text.metric(
            "tally_aggregator_batches_total", "counter", "Committed batch transactions (a batch written in parts counts each part)", s.batches)
        text.metric("tally_aggregator_database_failures_total", "counter", "Failed batch transactions", s.databaseFailures)
        text.metric("tally_aggregator_batch_events", "gauge", "Events in the last committed batch transaction", s.lastBatchEvents)
        text.metric(
            "tally_aggregator_events_per_second", "gauge", "Events counted per second over the last 10 s",
            Double(recentEvents) / Double(Self.window))
        text.metric("tally_aggregator_queue_depth", "gauge", "Messages ready in the usage queue (queue lag)", s.queueDepth)
        text.histogram(
            "tally_aggregator_commit_seconds", "Time to write and commit one batch transaction", bounds: Self.commitBounds,
            [([], s.commitSeconds)])
        text.family(
            "tally_aggregator_batch_phase_seconds_total", "counter", "Time spent per phase of committed batches",
            UsageLedger.Phase.allCases.map { ([("phase", $0.rawValue)], PrometheusText.number(s.phaseSeconds[$0.rawValue] ?? 0)) })
        text.histogram(
            "tally_aggregator_event_visible_seconds", "From the earliest event time of a batch to its commit", bounds: Self.visibleBounds,
            [([], s.visibleSeconds)])
        if let configCache {
            let loads = configCache.loadCounts
            let emptied = configCache.emptied
            text.family(
                "tally_aggregator_config_loads_total", "counter",
                "Configuration read from the database by the cache: the catalog (metrics and plans), or one tenant's subscriptions and alerts",
                [([("kind", "catalog")], "\(loads.catalog)"), ([("kind", "tenant")], "\(loads.tenants)")])
            text.family(
                "tally_aggregator_config_cache_emptied_total", "counter",
                "Times the configuration cache started again: the change log pruned past where it last read, truncated, or too many tenants changed at once (log); the cache full (full)",
                [([("reason", "log")], "\(emptied.restarts)"), ([("reason", "full")], "\(emptied.overflows)")])
        }
        return text.text
    }
}
