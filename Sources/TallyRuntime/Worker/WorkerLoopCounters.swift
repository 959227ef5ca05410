import Synchronization
import TallyMessaging

/// What the shared worker loop reports (`QueueWorkerObserver`), counted for `/metrics`
/// under a worker's prefix: `PREFIX_messages_retried_total`,
/// `PREFIX_messages_parked_total`, `PREFIX_dependency_failures_total` and
/// `PREFIX_queue_depth`.
public final class WorkerLoopCounters: QueueWorkerObserver {
    public struct Counts: Sendable {
        public var messagesRetried = 0
        public var messagesParked = 0
        /// Attempts held because a server the work needs was down.
        public var dependencyFailures = 0
        public var queueDepth = 0
    }

    private let counts = Mutex(Counts())

    public init() {}

    public var snapshot: Counts { counts.withLock { $0 } }

    public func workFailed(_ failure: WorkFailure) {
        guard case .dependencyDown = failure else { return }
        counts.withLock { $0.dependencyFailures += 1 }
    }
    public func retried(_ count: Int) { counts.withLock { $0.messagesRetried += count } }
    public func parked(_ count: Int) { counts.withLock { $0.messagesParked += count } }
    public func queueDepth(_ depth: Int) { counts.withLock { $0.queueDepth = depth } }

    /// The four series, written into `text`; `messages` names what the queue carries
    /// ("Commands"), `dependencies` the servers the work needs, `queue` the work queue.
    public func render(into text: inout PrometheusText, prefix: String, messages: String, dependencies: String, queue: String) {
        let s = snapshot
        text.metric("\(prefix)_messages_retried_total", "counter", "\(messages) sent to a retry queue", s.messagesRetried)
        text.metric("\(prefix)_messages_parked_total", "counter", "\(messages) sent to the parking lot", s.messagesParked)
        text.metric("\(prefix)_dependency_failures_total", "counter", "Attempts held because \(dependencies) was down", s.dependencyFailures)
        text.metric("\(prefix)_queue_depth", "gauge", "\(messages) ready in \(queue)", s.queueDepth)
    }
}
