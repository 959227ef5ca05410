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
        /// Events waiting in memory at most; beyond it `track` reports back-pressure.
        /// (Up to `submissionsInFlight` × 10 batches being published come on top.)
        public var memoryLimit = 200_000
        /// Submissions to the publisher in flight at once: while one waits for its
        /// confirms, the next is being encoded.
        public var submissionsInFlight = 4

        public init() {}
    }

    private struct Pending {
        var events: [Tracked] = []
        var isClosed = false
    }

    /// An event and the W3C trace context it was tracked in.
    private struct Tracked: Sendable {
        let event: UsageEvent
        let traceparent: String?
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
    /// retries). Cheap checks only, each naming its field when it refuses: the metric
    /// name, the quantity range, and the sizes SPEC §3 allows — `id` 1 to 255
    /// characters, `name` and `unit` at most 200, `metadata` at most 8 KiB of JSON.
    ///
    /// The sizes are what makes every event publishable: an event within them encodes
    /// to about 10 KiB, so a batch of 1000 stays near 10 MiB, far below the broker's
    /// message limit (RabbitMQ's `max_message_size`, 128 MiB by default) and below any
    /// sensible spool size. A bigger event would be refused by the broker (or never fit
    /// the spool) on every attempt, holding up what was tracked after it.
    ///
    /// `traceparent` is the caller's W3C trace context. An AMQP message has one
    /// `traceparent` header, so a batch carries the context of its first traced event.
    @discardableResult
    public func track(
        tenant: UUID, metric: String, quantity: Quantity = 1, name: String? = nil, unit: String? = nil,
        metadata: [String: JSONValue] = [:], id: String? = nil, at time: Date = Date(), traceparent: String? = nil
    ) throws(MeteringError) -> String {
        try Self.check(metric: metric, quantity: quantity)
        try Self.check(id: id, name: name, unit: unit, metadata: metadata)
        let event = UsageEvent(
            id: id ?? EventID.make(at: time), tenantID: tenant, metric: metric, name: name, quantity: quantity,
            unit: unit, time: time, metadata: metadata)
        let accepted = pending.withLock { state -> Bool in
            guard !state.isClosed, state.events.count < options.memoryLimit else { return false }
            state.events.append(Tracked(event: event, traceparent: traceparent))
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
        await withTaskGroup(of: Void.self) { submissions in
            var inFlight = 0
            while !isClosed {
                // A partial batch waits up to the linger time for company; a full batch,
                // or shutdown, ends the wait within a tick.
                let deadline = ContinuousClock.now + options.linger
                while !isClosed, pendingCount < options.batchSize, ContinuousClock.now < deadline {
                    do { try await Task.sleep(for: min(Self.tick, deadline - ContinuousClock.now)) } catch { return }
                }
                if inFlight == options.submissionsInFlight {
                    await submissions.next()
                    inFlight -= 1
                }
                guard let taken = take(limit: options.batchSize * 10) else { continue }
                inFlight += 1
                submissions.addTask { _ = await self.submit(taken) }
            }
        }
    }

    private func flush() async {
        shutdown()
        while !Task.isCancelled, let taken = take(limit: options.batchSize * 10) {
            guard await submit(taken) else {
                logger.critical("shutdown with events neither confirmed nor spooled", metadata: ["events": "\(pendingCount)"])
                return
            }
        }
    }

    /// Takes up to `limit` of the oldest pending events. Swaps the whole buffer out
    /// when it is small enough, so `track` never waits behind a large copy.
    private func take(limit: Int) -> [Tracked]? {
        pending.withLock { state -> [Tracked]? in
            guard !state.events.isEmpty else { return nil }
            if state.events.count <= limit {
                defer { state.events = [] }
                return state.events
            }
            let taken = Array(state.events.prefix(limit))
            state.events.removeFirst(limit)
            return taken
        }
    }

    /// Hands events to the publisher; on back-pressure they go back to the front of
    /// the queue. Returns whether they were made durable.
    private func submit(_ tracked: [Tracked]) async -> Bool {
        let batches = stride(from: 0, to: tracked.count, by: options.batchSize).map { start in
            let slice = tracked[start..<min(start + options.batchSize, tracked.count)]
            return UsageBatch(events: slice.lazy.map(\.event), traceparent: slice.lazy.compactMap(\.traceparent).first)
        }
        do {
            _ = try await publisher.submit(batches)
            return true
        } catch {
            pending.withLock { $0.events.insert(contentsOf: tracked, at: 0) }
            logger.warning("usage not yet durable; holding it in memory", metadata: ["error": "\(error)"])
            try? await Task.sleep(for: .milliseconds(200))
            return false
        }
    }

    static func check(metric: String, quantity: Quantity) throws(MeteringError) {
        guard MetricName.isValid(metric) else { throw .invalidEvent(field: "metric", message: MetricName.rule) }
        guard quantity.isValidPerEvent else {
            throw .invalidEvent(field: "quantity", message: "must be between 0 and 1e12")
        }
    }

    static func check(id: String?, name: String?, unit: String?, metadata: [String: JSONValue]) throws(MeteringError) {
        if let id, !(1...UsageEventValidator.maxIDLength).contains(id.count) {
            throw .invalidEvent(field: "id", message: "must be 1 to \(UsageEventValidator.maxIDLength) characters; reuse a shorter key")
        }
        for (field, text) in [("name", name), ("unit", unit)] {
            if let text, text.count > UsageEventValidator.maxTextLength {
                throw .invalidEvent(field: field, message: "must be at most \(UsageEventValidator.maxTextLength) characters")
            }
        }
        guard !metadata.isEmpty else { return }
        var writer = JSONWriter()
        writer.write(.object(metadata))
        guard writer.bytes.count <= UsageEventValidator.maxMetadataBytes else {
            throw .invalidEvent(
                field: "metadata",
                message:
                    "is \(writer.bytes.count) bytes of JSON; at most \(UsageEventValidator.maxMetadataBytes) are allowed (keep large payloads elsewhere and meter a reference)"
            )
        }
    }
}
