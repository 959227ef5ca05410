import DiskSpool
import Foundation
import Logging
import RabbitMQClient
import Synchronization

/// Makes usage batches durable: published to RabbitMQ and confirmed by the broker,
/// or, when the broker is unreachable or slow, appended to the fsynced disk spool.
/// `submit` returns only once one of the two has happened (SPEC §4's 202 rule).
///
/// Submissions that arrive together share one confirm window, so many batches are
/// in flight at once. While connected, the spool is drained in order in the
/// background; a drained batch is acknowledged in the spool only after its confirm.
/// A batch may be published twice after a failure (never lost): the Aggregator
/// dedups events by id.
public actor DurablePublisher {
    /// Where a submitted batch ended up.
    public enum Durability: Sendable, Equatable {
        case confirmed
        case spooled
    }

    private let configuration: AMQPConfiguration
    private let spool: DiskSpool
    private let logger: Logger
    private let confirmTimeout: Duration
    private let counters: MeteringCounters
    private var connection: AMQPConnection?
    private var nextConnectAttempt = ContinuousClock.now
    private var reconnectDelay: Duration = .milliseconds(100)
    private var waiting: [Submission] = []
    /// Set when `run` has returned: a later submission would wait forever, so it is refused.
    private var hasStopped = false
    private let finishing = Mutex(false)
    private var isFinishing: Bool { finishing.withLock { $0 } }
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>

    private struct Submission {
        let batches: [UsageBatch]
        let continuation: CheckedContinuation<Durability, any Error>
    }

    public init(
        configuration: AMQPConfiguration, spool: DiskSpool, logger: Logger, confirmTimeout: Duration = .seconds(5),
        counters: MeteringCounters = MeteringCounters()
    ) {
        self.configuration = configuration
        self.spool = spool
        self.logger = logger
        self.confirmTimeout = confirmTimeout
        self.counters = counters
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Returns once every batch is confirmed by the broker or fsynced in the spool.
    /// Throws `MeteringError.backPressure` when neither is possible (spool full).
    public func submit(_ batches: [UsageBatch]) async throws -> Durability {
        guard !batches.isEmpty else { return .confirmed }
        guard !isFinishing, !hasStopped else { throw MeteringError.shuttingDown }
        return try await withCheckedThrowingContinuation { continuation in
            waiting.append(Submission(batches: batches, continuation: continuation))
            wake.yield()
        }
    }

    /// Publishes submissions and drains the spool until `finish()` (then everything
    /// submitted so far is settled) or cancellation.
    public func run() async {
        var wakeups = wakes.makeAsyncIterator()
        while true {
            if !waiting.isEmpty {
                await publishWaiting()
                // Let the submitters just resumed hand in their next batches, so the next
                // round fills the confirm window instead of leaving with the first of them.
                await Task.yield()
                continue
            }
            if isFinishing { break }
            if await drainSpoolOnce() { continue }
            // Idle: wait for a submission, or retry the spool after a short pause.
            let spoolPending = spool.unacknowledgedRecordCount > 0
            if spoolPending {
                try? await Task.sleep(for: .milliseconds(200))
                if Task.isCancelled { break }
            } else if await wakeups.next() == nil || Task.isCancelled {
                break
            }
        }
        hasStopped = true
        failRemaining(MeteringError.shuttingDown)
        await connection?.close()
    }

    /// Stops taking submissions; `run()` settles what it holds and returns.
    /// Callable from any context, e.g. a graceful-shutdown handler.
    public nonisolated func finish() {
        finishing.withLock { $0 = true }
        wake.yield()
    }

    // MARK: Publishing

    private func publishWaiting() async {
        let submissions = waiting
        waiting.removeAll()
        let batches = submissions.flatMap(\.batches)
        let outcomes = await publish(batches)
        var unconfirmed: [UsageBatch] = []
        for (batch, outcome) in zip(batches, outcomes) where outcome != .confirmed { unconfirmed.append(batch) }
        let spoolFailure = await append(toSpool: unconfirmed)
        var offset = 0
        for submission in submissions {
            let range = offset..<offset + submission.batches.count
            offset += submission.batches.count
            let allConfirmed = outcomes[range].allSatisfy { $0 == .confirmed }
            if allConfirmed {
                submission.continuation.resume(returning: .confirmed)
            } else if let spoolFailure {
                submission.continuation.resume(throwing: spoolFailure)
            } else {
                submission.continuation.resume(returning: .spooled)
            }
        }
    }

    /// One outcome per batch; anything but `.confirmed` must be spooled.
    private func publish(_ batches: [UsageBatch]) async -> [PublishOutcome?] {
        guard let connection = await connected() else { return Array(repeating: nil, count: batches.count) }
        do {
            let outcomes = try await connection.publish(batches.map(\.message), timeout: confirmTimeout)
            let confirmed = outcomes.filter { $0 == .confirmed }.count
            counters.add(published: batches.count, confirmed: confirmed)
            for case .returned(let code, let text) in outcomes {
                logger.error(
                    "usage batch returned by the broker: is the usage queue bound?",
                    metadata: ["amqp.reply_code": "\(code)", "amqp.reply_text": "\(text)"])
            }
            return outcomes
        } catch {
            logger.warning("publish failed; spooling", metadata: ["error": "\(error)"])
            await disconnect()
            return Array(repeating: nil, count: batches.count)
        }
    }

    private func append(toSpool batches: [UsageBatch]) async -> (any Error)? {
        guard !batches.isEmpty else { return nil }
        do {
            try await spool.append(batches.map(\.spoolRecord))
            counters.add(spooled: batches.count)
            return nil
        } catch where error.code == .full {
            logger.error("spool full and broker unavailable: refusing usage (back-pressure)")
            return MeteringError.backPressure
        } catch {
            logger.critical("spool write failed", metadata: ["error": "\(error)"])
            return MeteringError.spoolFailed(String(describing: error))
        }
    }

    // MARK: Spool drain

    /// Publishes the oldest spooled batches once; true when it made progress.
    private func drainSpoolOnce() async -> Bool {
        guard spool.unacknowledgedRecordCount > 0, let connection = await connected() else { return false }
        do {
            let records = try await spool.peek(maxRecords: 50, maxBytes: 16 << 20)
            let batches = records.compactMap { UsageBatch(spoolRecord: $0.payload) }
            guard let last = records.last, batches.count == records.count else {
                logger.critical("unreadable spool record; leaving the spool untouched")
                return false
            }
            let outcomes = try await connection.publish(batches.map(\.message), timeout: confirmTimeout)
            guard outcomes.allSatisfy({ $0 == .confirmed }) else { return false }
            try await spool.acknowledge(through: last.position)
            counters.add(published: batches.count, confirmed: batches.count, drained: batches.count)
            return true
        } catch {
            logger.warning("spool drain failed; will retry", metadata: ["error": "\(error)"])
            await disconnect()
            return false
        }
    }

    // MARK: Connection

    private func connected() async -> AMQPConnection? {
        if let connection { return connection }
        guard ContinuousClock.now >= nextConnectAttempt else { return nil }
        do {
            let connection = try await AMQPConnection.connect(configuration: configuration, logger: logger)
            try await connection.openChannel(1, confirms: true)
            self.connection = connection
            reconnectDelay = .milliseconds(100)
            logger.info("connected to RabbitMQ", metadata: ["amqp.target": "\(configuration)"])
            return connection
        } catch {
            nextConnectAttempt = ContinuousClock.now + reconnectDelay
            reconnectDelay = min(reconnectDelay * 2, .seconds(5))
            logger.warning("RabbitMQ unavailable; spooling", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func disconnect() async {
        await connection?.close()
        connection = nil
        nextConnectAttempt = ContinuousClock.now + reconnectDelay
    }

    private func failRemaining(_ error: any Error) {
        for submission in waiting { submission.continuation.resume(throwing: error) }
        waiting.removeAll()
    }
}
