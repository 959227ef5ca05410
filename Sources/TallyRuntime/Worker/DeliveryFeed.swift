import RabbitMQClient

/// One batch handed to a handler as its deliveries arrive (`QueueWorkHandler.streamsBatches`),
/// closed by the rules a whole batch is collected by: `maxBatch` messages or the batch's
/// bytes, what has arrived, and — while the queue holds a backlog beyond the prefetch —
/// what arrives within the linger time.
///
/// A handler reads each delivery (`next`), does its part of the work and may drop its body
/// (`releaseBody(at:)`), so a batch's bytes are never held whole. Such a feed hands out only
/// deliveries never delivered before (`firstDeliveriesOnly`): a redelivered one ends the
/// batch and begins the next, handled whole with bodies kept (the worker's retries, holds
/// and splits need them). The worker collects a whole batch through a feed too.
///
/// Used by one consumer, one call at a time.
public final class DeliveryFeed: @unchecked Sendable {
    private let channel: AMQPConnection
    private let probe: QueueDepthProbe
    private let queue: String
    private let limit: Int
    private let batchBytes: Int
    private let linger: Duration
    private let firstDeliveriesOnly: Bool
    private var first: Delivery?
    private var bytes = 0
    /// Until when to wait for more, once the queue was found holding a backlog.
    private var deadline: ContinuousClock.Instant?
    private var probed = false
    private var ended = false

    /// Every delivery handed out, in order (bodies dropped by `releaseBody(at:)` empty).
    public private(set) var deliveries: [Delivery] = []
    /// Whether any body was dropped: the batch can then only be requeued on a failure.
    public private(set) var releasedBodies = false
    /// A delivery received but not handed out (redelivered): the next batch's first.
    private(set) var leftover: Delivery?
    /// What ended the feed when reading from the broker failed (the worker reconnects).
    private(set) var brokerError: (any Error)?

    /// Whether the batch ended because the broker went away: none of it will be acked (it
    /// comes again, redelivered), so a handler should not do what must happen once per
    /// batch (the Aggregator leaves its last part, which parks, unwritten).
    public var interrupted: Bool { brokerError != nil }

    init(
        first: Delivery, channel: AMQPConnection, probe: QueueDepthProbe, queue: String, limit: Int, batchBytes: Int, linger: Duration,
        firstDeliveriesOnly: Bool
    ) {
        self.firstDeliveriesOnly = firstDeliveriesOnly
        self.first = first
        self.channel = channel
        self.probe = probe
        self.queue = queue
        self.limit = limit
        self.batchBytes = batchBytes
        self.linger = linger
    }

    /// The batch's next delivery; nil once the batch is complete.
    public func next() async -> Delivery? {
        if let delivery = first {
            first = nil
            return handOut(delivery)
        }
        guard !ended, deliveries.count < limit, bytes < batchBytes else { return nil }
        do {
            // What the connection has received already (a zero timeout does not wait); then,
            // the queue holding more than was sent here, what arrives within the linger time.
            var delivery = try await channel.nextDelivery(timeout: .zero)
            if delivery == nil, linger > .zero {
                if !probed {
                    probed = true
                    if let ready = await probe.readyMessages(in: queue), ready > 0 { deadline = .now + linger }
                }
                if let deadline, deadline > .now { delivery = try await channel.nextDelivery(timeout: deadline - .now) }
            }
            guard let delivery, !(firstDeliveriesOnly && delivery.redelivered) else {
                leftover = delivery
                ended = true
                return nil
            }
            return handOut(delivery)
        } catch {
            brokerError = error
            ended = true
            return nil
        }
    }

    /// Drops the body of the delivery at `index` of `deliveries` (its memory is freed once
    /// the handler holds it no more).
    public func releaseBody(at index: Int) {
        deliveries[index].releaseBody()
        releasedBodies = true
    }

    private func handOut(_ delivery: Delivery) -> Delivery {
        deliveries.append(delivery)
        bytes += delivery.body.count
        return delivery
    }
}
