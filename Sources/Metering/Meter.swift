import Foundation
import Logging
import Synchronization
import UsageEvents

/// The metering library's entry point: `track` records usage with an in-memory
/// append (no I/O on the caller's path), and `run` publishes it in batches through
/// a `DurablePublisher` (broker confirm, or disk spool when the broker is away).
///
/// When neither the broker nor the spool can take more and the in-memory queue is
/// full, `track` throws `MeteringError.backPressure` instead of dropping anything.
/// On graceful shutdown (`shutdown()`), `run` confirms or spools everything in
/// memory before it returns; cancelling `run` is a hard stop.
public final class Meter: Sendable {
    /// Tuning of the batching loop.
    public struct Options: Sendable {
        /// Events per AMQP message (SPEC §3: at most 1000).
        public var batchSize = UsageBatch.maxEvents
        /// How long a partial batch may wait for company before it is published.
        public var linger: Duration = .milliseconds(50)
        /// Events held in memory at most; beyond it `track` reports back-pressure.
        public var memoryLimit = 200_000

        public init() {}
    }

    private struct Pending {
        var events: [UsageEvent] = []
        var traceparent: String?
        var isClosed = false
    }

    private let publisher: DurablePublisher
    private let options: Options
    private let logger: Logger
    private let pending = Mutex(Pending())
    public let counters: MeteringCounters

    public init(publisher: DurablePublisher, counters: MeteringCounters, options: Options = Options(), logger: Logger) {
        self.publisher = publisher
        self.counters = counters
        self.options = options
        self.logger = logger
    }

    /// Records usage and returns its id (the given one, or a new UUIDv7 to reuse on
    /// retries). Cheap checks only: the metric name, the quantity range and precision.
    @discardableResult
    public func track(
        tenant: UUID, metric: String, quantity: Decimal = 1, name: String? = nil, unit: String? = nil,
        metadata: [String: JSONValue] = [:], id: String? = nil, at time: Date = Date(), traceparent: String? = nil
    ) throws(MeteringError) -> String {
        try Self.check(metric: metric, quantity: quantity)
        let event = UsageEvent(
            id: id ?? EventID.make(at: time), tenantID: tenant, metric: metric, name: name, quantity: quantity,
            unit: unit, time: time, metadata: metadata)
        let accepted = pending.withLock { state -> Bool in
            guard !state.isClosed, state.events.count < options.memoryLimit else { return false }
            state.events.append(event)
            if state.traceparent == nil { state.traceparent = traceparent }
            return true
        }
        guard accepted else {
            counters.add(refused: 1)
            throw pending.withLock { $0.isClosed } ? .shuttingDown : .backPressure
        }
        counters.add(queued: 1)
        return event.id
    }

    /// Stops accepting events; `run` then flushes what is in memory and returns.
    public func shutdown() {
        pending.withLock { $0.isClosed = true }
    }

    /// Publishes until `shutdown()`, then flushes what is left in memory.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.publisher.run() }
            await self.batchLoop()
            await self.flush()
            self.publisher.finish()
        }
    }

    private static let tick: Duration = .milliseconds(5)
    private var isClosed: Bool { pending.withLock { $0.isClosed } }

    /// Events accepted but not yet handed to the publisher.
    public var pendingCount: Int { pending.withLock { $0.events.count } }

    private func batchLoop() async {
        while !isClosed {
            // A partial batch waits up to the linger time for company; a full batch,
            // or shutdown, ends the wait within a tick.
            let deadline = ContinuousClock.now + options.linger
            while !isClosed, pendingCount < options.batchSize, ContinuousClock.now < deadline {
                do { try await Task.sleep(for: min(Self.tick, deadline - ContinuousClock.now)) } catch { return }
            }
            await publishPending(limit: options.batchSize * 10)
        }
    }

    private func flush() async {
        shutdown()
        while pendingCount > 0, !Task.isCancelled {
            guard await publishPending(limit: options.batchSize * 10) else {
                logger.critical("shutdown with events neither confirmed nor spooled", metadata: ["events": "\(pendingCount)"])
                return
            }
        }
    }

    /// Hands up to `limit` events to the publisher; on back-pressure they go back to
    /// the front of the queue. Returns whether they were made durable.
    @discardableResult
    private func publishPending(limit: Int) async -> Bool {
        let (events, traceparent) = pending.withLock { state -> ([UsageEvent], String?) in
            let taken = Array(state.events.prefix(limit))
            state.events.removeFirst(taken.count)
            defer { state.traceparent = nil }
            return (taken, state.traceparent)
        }
        guard !events.isEmpty else { return true }
        do {
            _ = try await publisher.submit(try UsageBatch.batches(of: events, traceparent: traceparent))
            return true
        } catch {
            pending.withLock { $0.events.insert(contentsOf: events, at: 0) }
            logger.warning("usage not yet durable; holding it in memory", metadata: ["error": "\(error)"])
            try? await Task.sleep(for: .milliseconds(200))
            return false
        }
    }

    static func check(metric: String, quantity: Decimal) throws(MeteringError) {
        let bytes = Array(metric.utf8)
        let metricOK = (1...100).contains(bytes.count) && bytes[0] >= 0x61 && bytes[0] <= 0x7A
            && bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
        guard metricOK else { throw .invalidEvent(field: "metric", message: "must match [a-z][a-z0-9_]{0,99}") }
        guard quantity >= 0, quantity <= UsageEventValidator.maxQuantity, !quantity.isNaN else {
            throw .invalidEvent(field: "quantity", message: "must be between 0 and 1e12")
        }
    }
}
