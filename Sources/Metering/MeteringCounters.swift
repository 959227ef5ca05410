import Synchronization

/// What the metering pipeline has done, for `/metrics` and tests. `dropped` exists
/// to be watched: nothing in Tally ever drops an accepted event, so it stays 0.
public final class MeteringCounters: Sendable {
    /// A consistent copy of the counters.
    public struct Snapshot: Sendable, Equatable {
        public init(
            queued: Int = 0, published: Int = 0, confirmed: Int = 0, spooled: Int = 0, drained: Int = 0, refused: Int = 0,
            dropped: Int = 0, deadLettered: Int = 0, spoolWriteFailures: Int = 0
        ) {
            (self.queued, self.published, self.confirmed) = (queued, published, confirmed)
            (self.spooled, self.drained, self.refused, self.dropped) = (spooled, drained, refused, dropped)
            (self.deadLettered, self.spoolWriteFailures) = (deadLettered, spoolWriteFailures)
        }

        /// Events accepted by `track` into memory.
        public var queued = 0
        /// Batches published to RabbitMQ (including spool drains).
        public var published = 0
        /// Batches the broker confirmed.
        public var confirmed = 0
        /// Batches written to the disk spool.
        public var spooled = 0
        /// Spooled batches later published and confirmed.
        public var drained = 0
        /// Events refused by `track` for back-pressure (the caller was told).
        public var refused = 0
        /// Events lost. Always 0.
        public var dropped = 0
        /// Spooled batches the broker kept refusing (or unreadable records), set aside in
        /// the spool's dead-letter file: kept, not lost, but not delivered until replayed.
        public var deadLettered = 0
        /// Spool appends that failed (disk full, I/O error): nothing of them was kept, and
        /// their submitters were told (the Meter keeps the events in memory and retries).
        public var spoolWriteFailures = 0
    }

    // One atomic per counter: `track` bumps `queued` on every call, so no lock.
    private let queued = Atomic(0)
    private let published = Atomic(0)
    private let confirmed = Atomic(0)
    private let spooled = Atomic(0)
    private let drained = Atomic(0)
    private let refused = Atomic(0)
    private let deadLettered = Atomic(0)
    private let spoolWriteFailures = Atomic(0)

    public init() {}

    /// The counters (each exact; read one after another, not as one transaction).
    public var snapshot: Snapshot {
        Snapshot(
            queued: queued.load(ordering: .relaxed), published: published.load(ordering: .relaxed),
            confirmed: confirmed.load(ordering: .relaxed), spooled: spooled.load(ordering: .relaxed),
            drained: drained.load(ordering: .relaxed), refused: refused.load(ordering: .relaxed), dropped: 0,
            deadLettered: deadLettered.load(ordering: .relaxed), spoolWriteFailures: spoolWriteFailures.load(ordering: .relaxed))
    }

    func add(
        queued: Int = 0, published: Int = 0, confirmed: Int = 0, spooled: Int = 0, drained: Int = 0, refused: Int = 0,
        deadLettered: Int = 0, spoolWriteFailures: Int = 0
    ) {
        if queued != 0 { self.queued.add(queued, ordering: .relaxed) }
        if published != 0 { self.published.add(published, ordering: .relaxed) }
        if confirmed != 0 { self.confirmed.add(confirmed, ordering: .relaxed) }
        if spooled != 0 { self.spooled.add(spooled, ordering: .relaxed) }
        if drained != 0 { self.drained.add(drained, ordering: .relaxed) }
        if refused != 0 { self.refused.add(refused, ordering: .relaxed) }
        if deadLettered != 0 { self.deadLettered.add(deadLettered, ordering: .relaxed) }
        if spoolWriteFailures != 0 { self.spoolWriteFailures.add(spoolWriteFailures, ordering: .relaxed) }
    }
}
