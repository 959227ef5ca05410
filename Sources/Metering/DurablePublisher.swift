import DiskSpool
import Foundation
import Logging
import RabbitMQClient
import Synchronization
import TallyMessaging

/// Makes usage batches durable: published to RabbitMQ and confirmed by the broker,
/// or, when the broker is unreachable or slow, appended to the fsynced disk spool.
/// `submit` returns only once one of the two has happened (SPEC §4's 202 rule).
///
/// Submissions that arrive together share one confirm window, so many batches are
/// in flight at once. While connected, the spool is drained in order in the
/// background; a drained batch is acknowledged in the spool only after its confirm.
/// A batch may be published twice after a failure (never lost): the Aggregator
/// dedups events by id.
///
/// A spooled batch the broker refuses (returned, nacked, or a channel error over it)
/// is retried alone with a capped exponential delay and, after `RefusalPolicy`'s
/// attempts, set aside in `dead-letter.ndjson` beside the spool (counted as
/// `deadLettered`), so the batches behind it drain. A record that cannot be read as a
/// batch is set aside at once. `producer spool dead-letter` lists, replays and purges them.
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
    private let exchange: String
    private var refusals: SpoolRefusals
    /// When the drain may publish again after the broker refused the spool's oldest batch.
    private var nextDrainAttempt = ContinuousClock.now
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
        counters: MeteringCounters = MeteringCounters(), refusalPolicy: RefusalPolicy = RefusalPolicy()
    ) {
        self.init(
            configuration: configuration, spool: spool, logger: logger, confirmTimeout: confirmTimeout, counters: counters,
            refusalPolicy: refusalPolicy, exchange: ExchangeName.usage)
    }

    /// Publishing to `exchange` instead of `usage`: tests that must not reach the running
    /// Aggregator (or share the broker's answers with other tests' queues) use a private one.
    package init(
        configuration: AMQPConfiguration, spool: DiskSpool, logger: Logger, confirmTimeout: Duration,
        counters: MeteringCounters, refusalPolicy: RefusalPolicy, exchange: String
    ) {
        self.exchange = exchange
        self.configuration = configuration
        self.spool = spool
        self.logger = logger
        self.confirmTimeout = confirmTimeout
        self.counters = counters
        self.refusals = SpoolRefusals(policy: refusalPolicy)
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
            // Idle: wait for a submission, or retry the spool after a short pause (shorter
            // when the retry delay of a refused batch ends sooner).
            let spoolPending = spool.unacknowledgedRecordCount > 0
            if spoolPending {
                let untilRetry = nextDrainAttempt - ContinuousClock.now
                try? await Task.sleep(for: untilRetry > .zero ? min(untilRetry, .milliseconds(200)) : .milliseconds(200))
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
            let outcomes = try await connection.publish(batches.map { $0.message(exchange: exchange) }, timeout: confirmTimeout)
            let confirmed = outcomes.filter { $0 == .confirmed }.count
            counters.add(published: batches.count, confirmed: confirmed)
            for case .returned(let code, let text) in outcomes {
                logger.error(
                    "usage batch returned by the broker: is the usage queue bound?",
                    metadata: ["amqp.reply_code": "\(code)", "amqp.reply_text": "\(text)"])
            }
            let nacked = outcomes.filter { $0 == .nacked }.count
            if nacked > 0 {
                logger.warning("usage batches nacked by the broker; spooled, to be published again", metadata: ["batches": "\(nacked)"])
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
        } catch  where error.code == .full {
            logger.error("spool full and broker unavailable: refusing usage (back-pressure)")
            return MeteringError.backPressure
        } catch {
            counters.add(spoolWriteFailures: 1)
            logger.critical("spool write failed", metadata: ["error": "\(error)"])
            return MeteringError.spoolFailed(String(describing: error))
        }
    }

    // MARK: Spool drain

    /// Publishes the oldest spooled batches once (one alone while the broker is refusing
    /// one) and acknowledges what is settled; true when it made progress.
    private func drainSpoolOnce() async -> Bool {
        guard spool.unacknowledgedRecordCount > 0, ContinuousClock.now >= nextDrainAttempt,
            let connection = await connected()
        else { return false }
        let records: [SpooledRecord]
        do {
            records = try await spool.peek(maxRecords: refusals.publishesAlone ? 1 : 50, maxBytes: 16 << 20)
        } catch {
            logger.critical("cannot read the spool; will retry", metadata: ["error": "\(error)"])
            return false
        }
        var batches: [UsageBatch] = []
        for record in records {
            guard let batch = UsageBatch(spoolRecord: record.payload) else { break }
            batches.append(batch)
        }
        guard let first = records.first else { return false }
        guard !batches.isEmpty else {
            // It will never read better: set it aside now rather than retry it.
            return await setAside(first, reason: "unreadable spool record (not a usage batch)", attempts: 1)
        }
        let publishing = Array(records.prefix(batches.count))
        let outcomes: [PublishOutcome]
        do {
            outcomes = try await connection.publish(batches.map { $0.message(exchange: exchange) }, timeout: confirmTimeout)
        } catch  where error.code == .channelClosed {
            // The broker refused something on the channel (406 a message too large, 404 no
            // such exchange…): one at a time, the refusal will name its record.
            await disconnect()
            guard publishing.count == 1 else {
                refusals.refusedTogether(through: publishing[publishing.count - 1].position)
                return false
            }
            return await refused(first, reason: error.description)
        } catch {
            logger.warning("spool drain failed; will retry", metadata: ["error": "\(error)"])
            await disconnect()
            return false
        }
        let confirmed = outcomes.filter { $0 == .confirmed }.count
        counters.add(published: batches.count, confirmed: confirmed, drained: confirmed)
        return await settle(publishing, outcomes: outcomes)
    }

    /// Acknowledges the confirmed records in order up to the first refused one, which is
    /// retried later or, after its last attempt, set aside (and the drain goes past it).
    private func settle(_ records: [SpooledRecord], outcomes: [PublishOutcome]) async -> Bool {
        var settled: SpoolPosition?
        walk: for (record, outcome) in zip(records, outcomes) {
            if outcome == .confirmed {
                settled = record.position
                continue
            }
            switch refusals.refused(record.position) {
            case .retry(let delay, let attempt):
                retryLater(after: delay, attempt: attempt, reason: Self.reason(outcome))
                break walk
            case .setAside(let attempts):
                guard await writeDeadLetter(record, reason: Self.reason(outcome), attempts: attempts) else { break walk }
                settled = record.position
            }
        }
        guard let settled else { return false }
        return await acknowledge(through: settled)
    }

    /// Why the broker did not take a message, for the dead-letter file and the logs.
    static func reason(_ outcome: PublishOutcome) -> String {
        switch outcome {
        case .confirmed: "confirmed"
        case .nacked: "nacked by the broker (a queue at its limit with reject-publish, or a broker error)"
        case .returned(let code, let text): "returned by the broker: \(code) \(text) (is the usage queue bound?)"
        }
    }

    /// A record refused on its own by a channel error: retried later, or set aside.
    private func refused(_ record: SpooledRecord, reason: String) async -> Bool {
        switch refusals.refused(record.position) {
        case .retry(let delay, let attempt):
            retryLater(after: delay, attempt: attempt, reason: reason)
            return false
        case .setAside(let attempts):
            return await setAside(record, reason: reason, attempts: attempts)
        }
    }

    private func retryLater(after delay: Duration, attempt: Int, reason: String) {
        nextDrainAttempt = ContinuousClock.now + delay
        logger.warning(
            "spooled usage batch refused by the broker; retrying it alone",
            metadata: ["error": "\(reason)", "retry.attempt": "\(attempt)", "retry.in": "\(delay)"])
    }

    private func setAside(_ record: SpooledRecord, reason: String, attempts: Int) async -> Bool {
        guard await writeDeadLetter(record, reason: reason, attempts: attempts) else { return false }
        return await acknowledge(through: record.position)
    }

    /// Copies `record` to the dead-letter file; false (and a retry later) when that fails.
    private func writeDeadLetter(_ record: SpooledRecord, reason: String, attempts: Int) async -> Bool {
        do {
            try await spool.setAside(record.payload, reason: reason, attempts: attempts, at: Date())
        } catch {
            logger.critical("cannot write the dead-letter file; the batch stays at the head of the spool", metadata: ["error": "\(error)"])
            nextDrainAttempt = ContinuousClock.now + refusals.policy.maxDelay
            return false
        }
        counters.add(deadLettered: 1)
        logger.error(
            "spooled usage batch set aside in the dead-letter file; list it with `producer spool dead-letter list`",
            metadata: [
                "error": "\(reason)", "retry.attempts": "\(attempts)",
                "spool.dead_letters": "\(DeadLetterFile(spoolDirectory: spool.directory).path)",
            ])
        return true
    }

    private func acknowledge(through position: SpoolPosition) async -> Bool {
        do {
            try await spool.acknowledge(through: position)
        } catch {
            logger.critical("cannot acknowledge in the spool; its batches will be published again", metadata: ["error": "\(error)"])
            return false
        }
        refusals.settled(through: position)
        return true
    }

    // MARK: Connection

    /// The live connection, or a new one. One the broker closed while it sat idle is
    /// found out here, without blocking, and replaced at once: nothing is spooled for it.
    private func connected() async -> AMQPConnection? {
        if let connection {
            if await connection.isAlive() { return connection }
            await connection.close()
            self.connection = nil
            nextConnectAttempt = ContinuousClock.now
        }
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
