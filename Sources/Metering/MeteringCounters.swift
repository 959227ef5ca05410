import Synchronization

/// What the metering pipeline has done, for `/metrics` and tests. `dropped` exists
/// to be watched: nothing in Tally ever drops an accepted event, so it stays 0.
public final class MeteringCounters: Sendable {
    /// A consistent copy of the counters.
    public struct Snapshot: Sendable, Equatable {
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
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func add(queued: Int = 0, published: Int = 0, confirmed: Int = 0, spooled: Int = 0, drained: Int = 0, refused: Int = 0) {
        state.withLock {
            $0.queued += queued
            $0.published += published
            $0.confirmed += confirmed
            $0.spooled += spooled
            $0.drained += drained
            $0.refused += refused
        }
    }
}
