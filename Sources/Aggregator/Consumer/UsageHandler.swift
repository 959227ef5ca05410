import CivilTime
import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// The Aggregator's work on a batch of usage messages (the loop around it is the shared
/// `QueueWorker`): park what is not a usage batch, write the rest — events with their
/// dedup, rollups, parked events, quota and alert outbox rows — in one transaction (one
/// per part when the batch holds more tenant-hours than `tenantHoursPerTransaction`),
/// then tell others (quota states, billing events). Each consumer has its own
/// PostgreSQL connection; exactness comes from the ledger's dedup, not from coordination.
struct UsageHandler: QueueWorkHandler {
    let database: PostgresConfiguration
    let metrics: AggregatorMetrics
    /// Catalog, plans, subscriptions and alerts between batches (checked in each).
    var cache = UsageConfigCache()
    /// Runs after every commit (quota state, billing events); failures are logged there.
    let afterCommit: @Sendable (LedgerOutcome, PostgresConnection) async -> Void
    /// A batch is written in transactions of at most about this many (tenant, hour) pairs
    /// (`UsageDecoder.decode(_:tenantHoursPerPart:)`).
    var tenantHoursPerTransaction = 10_000

    func openSession(consumer: Int, logger: Logger, shouldStop: @escaping @Sendable () -> Bool) async -> PostgresConnection? {
        await PostgresConnection.connectRetrying(configuration: database, logger: logger, shouldStop: shouldStop)
    }

    func closeSession(_ session: PostgresConnection) async {
        await session.close()
    }

    /// A batch of first deliveries is handled as it arrives, each body dropped once decoded.
    var streamsBatches: Bool { true }

    /// A whole batch (redelivered, or handed whole), bodies kept.
    func process(_ deliveries: [Delivery], in database: PostgresConnection, logger: Logger) async -> WorkOutcome {
        var index = 0
        return await process(
            next: {
                defer { index += 1 }
                return index < deliveries.count ? deliveries[index] : nil
            }, interrupted: { false }, single: deliveries.count == 1 ? deliveries[0] : nil, release: nil, in: database, logger: logger)
    }

    /// A batch of first deliveries, as they arrive: each message's body is dropped once
    /// decoded (those not usage batches excepted, parked whole), so the batch's bytes are
    /// never held whole; a failure has the worker requeue it.
    func process(_ feed: DeliveryFeed, in database: PostgresConnection, logger: Logger) async -> WorkOutcome {
        await process(
            next: { await feed.next() }, interrupted: { feed.interrupted }, single: nil, release: { feed.releaseBody(at: $0) },
            in: database, logger: logger)
    }

    /// `deliveries` as a fed batch is handled, each body dropped (emptied) once decoded, the
    /// feed cut off by the broker after the last when `interrupted` (for tests).
    func process(
        releasingBodies deliveries: inout [Delivery], interrupted: Bool = false, in database: PostgresConnection, logger: Logger
    ) async -> WorkOutcome {
        var index = 0
        let source = deliveries
        var released: [Int] = []
        let outcome = await process(
            next: {
                defer { index += 1 }
                return index < source.count ? source[index] : nil
            }, interrupted: { interrupted }, single: nil, release: { released.append($0) }, in: database, logger: logger)
        for index in released { deliveries[index].releaseBody() }
        return outcome
    }

    /// The batch's deliveries one by one (`next`): each decoded (and handed to `release`,
    /// by its position, once its body is no longer needed), its rows staged once they come
    /// to a chunk, each part written once full. Neither the batch's bodies (when released)
    /// nor its rows are held whole; what is held grows with its tenant-hours. `single` is
    /// the batch's one delivery, kept whole, when a refusal of its data may be split. When
    /// the deliveries stopped coming because the broker went away (`interrupted`), the last
    /// part is not written: the batch is not acked and comes again, and only the last part
    /// parks, so nothing is parked twice.
    private func process(
        next: () async -> Delivery?, interrupted: () -> Bool, single: Delivery?, release: ((Int) -> Void)?, in database: PostgresConnection,
        logger: Logger
    ) async -> WorkOutcome {
        let decodedAt = TallyClock.now()
        var decoder = UsageDecoder.Parts(
            decoder: UsageDecoder(now: decodedAt), tenantHoursPerPart: tenantHoursPerTransaction, chunkBytes: stagingChunkBytes)
        var bytes = 0
        var poisoned: [WorkOutcome.Poisoned] = []
        var writer = PartWriter()
        let started = ContinuousClock.now
        do {
            var index = 0
            while let delivery = await next() {
                if decoder.isPartFull {
                    try await writer.stage(decoder.takeRows(), on: database)
                    try await write(decoder.closePart(), last: false, writer: &writer, on: database, logger: logger)
                }
                let decoding = ContinuousClock.now
                bytes += delivery.body.count
                if decoder.add(UsageMessage(delivery)), let release { release(index) }
                index += 1
                writer.decodeSeconds += (ContinuousClock.now - decoding).seconds
                if decoder.rowBytes >= stagingChunkBytes { try await writer.stage(decoder.takeRows(), on: database) }
            }
            guard !interrupted() else { return WorkOutcome(failure: .dependencyDown("RabbitMQ")) }
            try await writer.stage(decoder.takeRows(), on: database)
            // Every part but the last was closed above: the decoder holds only the last.
            var remainingParts = decoder.finish()
            precondition(remainingParts.count == 1, "parts are closed by the handler, one at a time")
            let last = remainingParts.removeLast()
            poisoned = last.unreadable.map { WorkOutcome.Poisoned(deliveryTag: $0.deliveryTag, reason: $0.reason) }
            try await write(consume last, last: true, writer: &writer, on: database, logger: logger)
            return WorkOutcome(
                poisoned: poisoned,
                nextBatchBytes: Self.nextBatchBytes(
                    afterBytes: bytes, tenantHours: writer.tenantHours, tenantHoursPerTransaction: tenantHoursPerTransaction))
        } catch {
            let failure = WorkFailure.classifying(error)
            if case .failed = failure { logger.error("batch failed", metadata: ["error": "\(String(reflecting: error))"]) }
            // One message the database refuses for its data: find the events at fault by
            // halving, park them with the reason, count the rest. (A batch of several
            // messages is split by the worker first, down to the message at fault.)
            // (Decoded again with the same clock, keeping what splitting needs; refused while
            // staged or while stored alike.)
            if let single, writer.parts == 0, Self.isRefusalOfData(error),
                case let whole = UsageDecoder(now: decodedAt, keepsSources: true).decode([UsageMessage(single)]), whole.eventCount > 1
            {
                do {
                    // The parts commit one by one (each told to others at once); what is parked
                    // — the decoder's and the refused events — commits last, together, so a
                    // retry of the message after a failure part-way parks nothing twice.
                    var parked = whole.parkedEvents
                    try await recordSplitting(
                        whole.subset(0..<whole.eventCount, withParked: false), parked: &parked, in: database, logger: logger)
                    var rest = DecodedBatch()
                    rest.parkedEvents = parked
                    let outcome = try await UsageLedger.record(rest, now: TallyClock.now(), cache: cache, on: database)
                    metrics.committed(outcome, seconds: (ContinuousClock.now - started).seconds, visibleAfter: nil)
                    return WorkOutcome(poisoned: poisoned)
                } catch {
                    return WorkOutcome(poisoned: poisoned, failure: WorkFailure.classifying(error))
                }
            }
            return WorkOutcome(poisoned: poisoned, failure: failure)
        }
    }

    /// Rows staged ahead of a batch's parts are COPYed this many bytes at a time (a few
    /// messages' rows: each consumer holds a chunk's buffer; a COPY costs a round trip).
    var stagingChunkBytes = 1 << 20

    /// What writing a batch's parts carries from one to the next.
    private struct PartWriter {
        /// Whether the current part's rows have begun to be staged (the staging table is
        /// emptied by its first chunk).
        var staging = false
        var decodeSeconds = 0.0
        var copySeconds = 0.0
        /// Parts written (committed).
        var parts = 0
        var tenantHours = 0
        /// Events of unknown tenants, taken out of the parts before the last, parked by it.
        var unknownTenantEvents: [ParkedEvent] = []

        /// Stages the current part's `rows`, after what it staged before.
        mutating func stage(_ rows: [UInt8], on database: PostgresConnection) async throws {
            guard !rows.isEmpty else { return }
            let copying = ContinuousClock.now
            try await UsageEventStore.stage(rows, appending: staging, on: database)
            staging = true
            copySeconds += (ContinuousClock.now - copying).seconds
        }
    }

    /// Writes one part of a batch, staged ahead (its events and periods, and, with the
    /// last, the batch's parked events), and tells others once it committed. A failure
    /// part-way leaves the batch to be tried again: what committed is found stored and
    /// counted nothing twice, and what is parked — the decoder's, and events of unknown
    /// tenants, carried to the last part — is parked by the last part only, so never twice.
    private func write(
        _ part: consuming DecodedBatch, last: Bool, writer: inout PartWriter, on database: PostgresConnection, logger: Logger
    ) async throws {
        let partStarted = ContinuousClock.now
        part.rowsStaged = true
        if last { part.parkedEvents += writer.unknownTenantEvents }
        metrics.received(part.eventCount + part.parkedEvents.count - (last ? writer.unknownTenantEvents.count : 0))
        // What is needed after it is written: the part itself goes to the ledger, which
        // lets go of its tenant-hours once it knows their periods.
        let (tenantHours, earliestEventTime, parked) = (part.hourBounds.count, part.earliestEventTime, part.parkedEvents)
        var outcome = try await UsageLedger.record(
            consume part, now: TallyClock.now(), cache: cache, parkingUnknownTenants: last, on: database)
        writer.staging = false
        writer.parts += 1
        writer.tenantHours += tenantHours
        writer.unknownTenantEvents += outcome.unknownTenantEvents
        // The part's decoding and staging happened before it was written: counted in its time.
        outcome.phases[.decode] = writer.decodeSeconds
        outcome.phases[.copy, default: 0] += writer.copySeconds
        let elapsed = ContinuousClock.now - partStarted
        let seconds = elapsed.seconds + writer.decodeSeconds + writer.copySeconds
        writer.decodeSeconds = 0
        writer.copySeconds = 0
        metrics.committed(outcome, seconds: seconds, visibleAfter: earliestEventTime.map { TallyClock.now().timeIntervalSince($0) })
        log(outcome, parked: parked, elapsed: elapsed, logger: logger)
        await afterCommit(outcome, database)
    }

    /// The size of the next batch, from the last one's: as big as keeps it within one
    /// transaction's tenant-hours, supposing the next messages mix tenants as these did
    /// (the worker bounds it by `AGGREGATOR_BATCH_BYTES` and `AGGREGATOR_BATCH_BYTES_MAX`).
    ///
    /// A batch's rollup, period-total and evaluation rows, and most of its memory, grow
    /// with its (tenant, hour) pairs, not its events: while a batch's events fall in few
    /// tenant-hours, a bigger one spreads that work over more events (5,000 tenants per
    /// drain: 72 % of the 20-tenant rate at 4 MiB, 80–90 % at 8 MiB); once its events are
    /// each a tenant-hour of their own, it is written in parts anyway and a bigger one only
    /// holds more memory (50,000 tenants: the same rate, a peak RSS over 150 MB at 8 MiB).
    static func nextBatchBytes(afterBytes bytes: Int, tenantHours: Int, tenantHoursPerTransaction: Int) -> Int? {
        guard bytes > 0, tenantHours > 0 else { return nil }
        let scaled = Double(bytes) * Double(tenantHoursPerTransaction) / Double(tenantHours)
        return scaled >= Double(Int.max) ? Int.max : Int(scaled)
    }

    /// Whether the database refused the batch for what it holds (a data exception, a
    /// constraint, a size limit such as an index row): retrying it whole cannot help,
    /// but its other events can be counted. A missing month partition is not the
    /// events' fault (upkeep creates it): that stays a failure to retry.
    static func isRefusalOfData(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError, let state = error.sqlState else { return false }
        // 23514 without a constraint is "no partition of relation … found for row".
        if state == "23514", error.constraint == nil { return false }
        return ["22", "23", "54"].contains(String(state.prefix(2)))
    }

    /// Records the two halves of `batch` (staged events only) in their own transactions,
    /// each split again if refused; a single refused event is added to `parked` with the
    /// database's reason.
    private func recordSplitting(
        _ batch: DecodedBatch, parked: inout [ParkedEvent], in database: PostgresConnection, logger: Logger
    ) async throws {
        let middle = batch.eventCount / 2
        for part in [batch.subset(0..<middle, withParked: false), batch.subset(middle..<batch.eventCount, withParked: false)] {
            do {
                let outcome = try await UsageLedger.record(part, now: TallyClock.now(), cache: cache, on: database)
                metrics.committed(outcome, seconds: 0, visibleAfter: nil)
                await afterCommit(outcome, database)
            } catch  where Self.isRefusalOfData(error) && part.eventCount > 1 {
                try await recordSplitting(part, parked: &parked, in: database, logger: logger)
            } catch  where Self.isRefusalOfData(error) && part.eventCount == 1 {
                let reason = (error as? PostgresError)?.message ?? "\(error)"
                logger.info("event refused by the database, parked", metadata: ["reason": "\(reason)"])
                parked += part.refusal(reason).parkedEvents
            }
        }
    }

    private func log(_ outcome: LedgerOutcome, parked: [ParkedEvent], elapsed: Duration, logger: Logger) {
        if logger.logLevel <= .debug {
            // Thousands of tenants per batch: named only when someone reads debug logs.
            let tenants = outcome.someTenantsInserted
            logger.debug(
                "batch committed",
                metadata: [
                    "events.inserted": "\(outcome.inserted)", "events.duplicate": "\(outcome.duplicates)",
                    "events.parked": "\(outcome.parked)", "commit.ms": "\(Int(elapsed.seconds * 1000))",
                    "phases.ms": .dictionary(
                        Dictionary(uniqueKeysWithValues: outcome.phases.map { ($0.key.rawValue, .string("\(Int($0.value * 1000))")) })),
                    "tenants.inserted": "\(outcome.tenantsInserted)", "tenant.ids": .array(tenants.map { .string($0.lowercasedText) }),
                ])
        }
        // The first few by name; `aggregator dlq list` has them all.
        for event in parked.prefix(10) {
            logger.info(
                "event parked",
                metadata: [
                    "tenant.id": "\(event.tenantID ?? "-")", "usage.event_id": "\(event.eventID ?? "-")",
                    "reason": "\(event.reason)", "amqp.message_id": "\(event.messageID ?? "-")",
                ])
        }
        if outcome.parked > parked.count {
            logger.info("events of unknown tenants parked", metadata: ["events.parked": "\(outcome.parked - parked.count)"])
        }
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for metrics).
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
