import ArgumentParser
import Foundation
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyStore
import UsageEvents

/// The Aggregator's drain rate as the tenants mixed in its batches grow (the issue: 20,
/// 500, 5,000 and 50,000 distinct tenants): a batch's cost must not grow with the
/// tenants it touches. Two commands, so `./ops/local.sh bench tenants` can start a
/// release Aggregator between them:
/// 1. `drain-fill`, with no Aggregator running: creates the tenants and fills
///    `aggregator.usage` with usage messages whose events go round-robin over them;
/// 2. `drain-wait`, once an Aggregator drains the queue: the rate from the first to the
///    last insert of the run's events (`usage_events.received_at`, set by the database as
///    each row is inserted), so neither start-up nor polling is counted; then it deletes
///    everything of the run.
///
/// A run is known by its id alone: its tenants are named `drain-RUNID-0` …
/// `drain-RUNID-(N-1)` and written nowhere else.
enum DrainRun {
    /// Usage of a metric of its own, so the counts never mix with other benchmarks'.
    static let metric = "drain_calls"

    /// The id prefix of `--warm-up` events (a UUIDv7 never starts with it), which come first
    /// in the queue and are not counted in the rate.
    static let warmUpPrefix = "warm-"

    /// Letters and digits only: `drain-RUNID-%` then matches this run's tenants and no
    /// other's (a `_` would be a LIKE wildcard; with a `-`, run `a` would match run `a-b`).
    static func validate(runID: String) throws {
        guard (1...64).contains(runID.count), runID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw ValidationError("--run-id must be 1 to 64 ASCII letters and digits, e.g. $(date -u +%Y%m%d%H%M%S)t20")
        }
    }

    /// The prefix of the run's tenant names; the tenant's index follows it.
    static func namePrefix(_ runID: String) -> String { "drain-\(runID)-" }

    /// The LIKE pattern of the run's tenant names.
    static func namePattern(_ runID: String) -> String { namePrefix(runID) + "%" }

    static func database() async throws -> PostgresConnection {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"] else {
            throw ValidationError("DATABASE_URL is not set: run through ./ops/local.sh bench, or source .local/env")
        }
        return try await PostgresConnection.connect(configuration: try PostgresConfiguration(url: url), logger: BenchSupport.logger)
    }

    /// Deletes the run's tenants and every row the Aggregator wrote for them
    /// (`TenantUsage`), in one transaction; returns how many tenants went. Without
    /// subscriptions or alerts, no quota crossing or alert firing (outbox,
    /// `alert_firings`) can have happened for them.
    @discardableResult
    static func cleanUp(_ runID: String, on database: PostgresConnection) async throws -> Int {
        let pattern = namePattern(runID)
        return try await database.withTransaction { connection in
            let tenants = try connection.query("SELECT id FROM tenants WHERE name LIKE $1", [pattern]).map { try $0.decode(0, as: UUID.self) }
            return try TenantUsage.delete(of: tenants, withTenants: true, on: connection)
        }
    }

    /// After a failed step nothing of the run is measured again: it is deleted, so tens of
    /// thousands of tenants do not stay behind. Says on stderr whether that worked.
    static func cleanUpAfterFailure(_ runID: String, on database: PostgresConnection) async {
        do {
            try await cleanUp(runID, on: database)
            FileHandle.standardError.write(Data("drain: run \(runID) deleted after the failure below\n".utf8))
        } catch {
            FileHandle.standardError.write(
                Data("drain: could not delete run \(runID) (\(error)); delete the tenants named \(namePattern(runID)) and their usage by hand\n".utf8)
            )
        }
    }
}

/// Step 1 of the drain benchmark: tenants, and a full `aggregator.usage`.
struct DrainFillBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain-fill",
        abstract: "Drain benchmark, step 1 (no Aggregator running): create N tenants and fill aggregator.usage with usage mixing them.",
        discussion: """
            Creates tenants drain-RUNID-0 … drain-RUNID-(N-1) (no subscriptions: measured by calendar month), then
            publishes --events events of metric drain_calls with confirms, --per-message per message; event i goes to
            tenant i % N, so every message mixes min(N, --per-message) tenants. Then start an Aggregator and run
            `tally-bench drain-wait` with the same --run-id. ./ops/local.sh bench tenants does all of it.
            With --warm-up, one event per tenant comes first in the queue (same metric, hour and month): the tenants
            are then already active in their period when the measured events arrive, as a SaaS's tenants are after
            their first request of the month; pass --warm-up to drain-wait too.
            """)

    @Option(help: "Tenants to create; event i goes to tenant i % N.") var tenants: Int
    @Option(help: "Events to publish in all.") var events = 200_000
    @Option(help: "Events per message (1 to 1000).") var perMessage = 1000
    @Option(help: "This run's id (letters and digits): its tenants are named drain-RUNID-INDEX.") var runID: String
    @Flag(help: "First one event per tenant, not counted: the measured events find their tenants active in the period.")
    var warmUp = false

    /// Messages per publish call: enough in flight to fill the queue quickly, few enough
    /// that a refusal is retried without sending much again.
    static let messagesPerPublish = 50
    static let progressEvery = 50_000

    func validate() throws {
        guard tenants > 0, events > 0 else { throw ValidationError("--tenants and --events must be positive") }
        guard (1...UsageBatch.maxEvents).contains(perMessage) else {
            throw ValidationError("--per-message must be 1 to \(UsageBatch.maxEvents) (a usage message's limit)")
        }
        try DrainRun.validate(runID: runID)
    }

    func run() async throws {
        let database = try await DrainRun.database()
        // One statement for every tenant: 50,000 inserts one by one would take longer than the drain.
        let ids = try await database.query(
            """
            INSERT INTO tenants (name, billing_email)
            SELECT $1::text || g, 'bench@tally.localhost' FROM generate_series(0, $2::int - 1) g RETURNING id
            """, [DrainRun.namePrefix(runID), tenants]
        ).map { try $0.decode(0, as: UUID.self) }
        guard ids.count == tenants else { throw ValidationError("created \(ids.count) tenants instead of \(tenants)") }
        print("drain-fill: \(ids.count) tenants created (\(DrainRun.namePrefix(runID))0 … \(DrainRun.namePrefix(runID))\(tenants - 1))")
        do {
            try await fill(ids)
        } catch {
            // What was published is purged before the next fill (./ops/local.sh does).
            await DrainRun.cleanUpAfterFailure(runID, on: database)
            await database.close()
            throw error
        }
        await database.close()
    }

    private func fill(_ ids: [UUID]) async throws {
        let connection = try await AMQPConnection.connect(configuration: try BenchSupport.broker(), logger: BenchSupport.logger)
        try await connection.openChannel(1, confirms: true)
        // Idempotent; makes sure the usage exchange routes to aggregator.usage on a bare broker.
        try await Topology.tally.declare(on: connection)
        // In the past, so no clock skew makes it "from the future"; one time for all, so the
        // events of a tenant touch one hour and one calendar month.
        let time = Date().addingTimeInterval(-60)
        let warmUpCount = warmUp ? ids.count : 0
        let total = warmUpCount + events
        let messageCount = (total + perMessage - 1) / perMessage
        var published = 0
        var reported = 0
        for firstMessage in stride(from: 0, to: messageCount, by: Self.messagesPerPublish) {
            // Encoded a chunk at a time: the fill is not timed, and memory stays small.
            let messages = (firstMessage..<min(firstMessage + Self.messagesPerPublish, messageCount)).map { message in
                let range = (message * perMessage)..<min((message + 1) * perMessage, total)
                return UsageBatch(
                    events: range.map { index in
                        let warm = index < warmUpCount
                        return UsageEvent(
                            id: warm ? DrainRun.warmUpPrefix + EventID.make() : EventID.make(), tenantID: ids[index % ids.count],
                            metric: DrainRun.metric, quantity: 1, time: time)
                    }
                ).message
            }
            try await publishConfirmed(messages, on: connection)
            published = min((firstMessage + messages.count) * perMessage, total)
            if published / Self.progressEvery > reported / Self.progressEvery || published == total {
                print("drain-fill: \(published) of \(total) events published and confirmed")
                reported = published
            }
        }
        // Any message missing from the queue was taken by a consumer: the drain would be
        // measured from a queue that was never full.
        let ready = Int(try await connection.declareQueue(QueueName.aggregatorUsage, passive: true))
        await connection.close()
        guard ready >= messageCount else {
            throw ValidationError(
                "\(QueueName.aggregatorUsage) holds \(ready) messages after \(messageCount) were published: an Aggregator is "
                    + "consuming it. Stop every Aggregator before drain-fill (./ops/local.sh bench tenants does).")
        }
        print(
            "drain-fill: \(warmUp ? "\(warmUpCount) warm-up events (one per tenant), then " : "")\(events) events in \(messageCount) "
                + "messages of \(perMessage), \(min(ids.count, perMessage)) tenants mixed per message; "
                + "\(QueueName.aggregatorUsage) holds \(ready) messages")
    }

    /// Publishes `messages` until the broker confirms each one. A nack (the broker's
    /// refusal, e.g. under memory pressure) is published again, as a real publisher does;
    /// the Aggregator counts an event once however often it arrives. A return means the
    /// queue is not bound: no retry helps.
    private func publishConfirmed(_ messages: [OutgoingMessage], on connection: AMQPConnection) async throws {
        var pending = messages
        for attempt in 1...5 {
            let outcomes = try await connection.publish(pending, timeout: .seconds(30))
            var nacked: [OutgoingMessage] = []
            for (message, outcome) in zip(pending, outcomes) {
                switch outcome {
                case .confirmed: continue
                case .nacked: nacked.append(message)
                case .returned(let code, let text):
                    throw ValidationError(
                        "a usage message was returned by the broker (\(code) \(text)): is \(QueueName.aggregatorUsage) bound to the usage exchange?")
                }
            }
            if nacked.isEmpty { return }
            pending = nacked
            try await Task.sleep(for: .milliseconds(200 * attempt))
        }
        throw ValidationError("the broker nacked \(pending.count) usage messages five times in a row; see .local/log/rabbitmq/")
    }
}

/// Step 2 of the drain benchmark: waits until an Aggregator has stored every event of
/// the run, prints the rate, then deletes the run.
struct DrainWaitBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain-wait",
        abstract: "Drain benchmark, step 2 (an Aggregator draining): the rate from the first to the last insert of the run's events.",
        discussion: """
            Waits (10 minutes at most) until every event drain-fill published for --run-id is in usage_events, prints
            events / (last received_at − first received_at), and then deletes the run's tenants and their usage.
            The last line of its output is `drain-rate: EVENTS_PER_SECOND`, for scripts.
            """)

    @Option(help: "The run id given to drain-fill.") var runID: String
    @Option(help: "Events drain-fill published.") var events = 200_000
    @Option(help: "Tenants drain-fill created (for the report).") var tenants: Int
    @Option(help: "Events per message drain-fill used (for the report).") var perMessage = 1000
    @Option(help: "The 20-tenant rate of the same run (events/s), to print this rate as a share of it.") var referenceRate: Double?
    @Option(help: "The raw COPY + dedup rate over 20 tenants of the same run (rows/s), to print the raw rate as a share of it.")
    var referenceRawRate: Double?
    @Flag(
        inversion: .prefixedNo,
        help: "After the drain, time raw COPY + dedup of as many events over the same tenants (the database's own limit at this spread).")
    var raw = true
    @Option(help: "Aggregator processes draining the queue together: reports a scaling row (--reference-rate is then 1 process's rate).")
    var processes: Int?
    @Option(help: "The Aggregator's pid, for its peak RSS.") var aggregatorPid: Int32?
    @Option(help: "The Aggregator's /metrics URL (started for this drain), for where its time went.") var aggregatorMetrics: String?
    @Flag(help: "drain-fill was given --warm-up: the rate counts from the last warm-up event's insert, and only the events after it.")
    var warmUp = false
    @Option(help: "How the Aggregator was configured, when not as by default (for the report: named in its sentence and figure).")
    var aggregatorSetting: String?

    static let deadline: Duration = .seconds(600)
    static let pollEvery: Duration = .milliseconds(100)

    func validate() throws {
        guard tenants > 0, events > 0, perMessage > 0 else { throw ValidationError("--tenants, --events and --per-message must be positive") }
        if let referenceRate, !(referenceRate > 0) { throw ValidationError("--reference-rate must be a positive rate") }
        if let referenceRawRate, !(referenceRawRate > 0) { throw ValidationError("--reference-raw-rate must be a positive rate") }
        if let processes, processes < 1 { throw ValidationError("--processes must be at least 1") }
        try DrainRun.validate(runID: runID)
    }

    func run() async throws {
        let database = try await DrainRun.database()
        let stored: (count: Int, seconds: Double)
        do {
            stored = try await waitForStored(database)
        } catch {
            await DrainRun.cleanUpAfterFailure(runID, on: database)
            await database.close()
            throw error
        }
        guard stored.seconds > 0 else {
            await DrainRun.cleanUpAfterFailure(runID, on: database)
            await database.close()
            throw ValidationError("all \(stored.count) events were inserted at the same instant: publish more events (--events)")
        }
        let rate = Double(stored.count) / stored.seconds
        let setting = aggregatorSetting.map { ", \($0)" } ?? ""
        var line =
            "drain: \(tenants) tenants\(warmUp ? " already active in the period" : "") mixed\(setting), \(min(tenants, perMessage)) per \(perMessage)-event message: "
            + "\(BenchSupport.format(rate)) events/s (\(warmUp ? "last warm-up insert to last insert, " : "first to last insert of ")"
            + "\(stored.count) events, \(String(format: "%.2f", stored.seconds)) s)"
        if let processes {
            line =
                "scaling: \(processes) aggregator process\(processes == 1 ? "" : "es"), \(tenants) tenants: "
                + "\(BenchSupport.format(rate)) events/s (first to last insert of \(stored.count) events, "
                + "\(String(format: "%.2f", stored.seconds)) s)"
            if let referenceRate {
                line += " = ×\(String(format: "%.2f", rate / referenceRate)) the 1-process rate (\(BenchSupport.format(referenceRate)) events/s)"
            }
        } else if let referenceRate {
            line +=
                " = \(String(format: "%.0f", 100 * rate / referenceRate))% of the 20-tenant rate "
                + "(\(BenchSupport.format(referenceRate)) events/s; target ≥ 80% at 5,000, ≥ 60% at 50,000)"
        }
        print(line)
        if let processes {
            BenchSupport.record(
                "scaling", "\(processes) aggregator process\(processes == 1 ? "" : "es"), \(tenants) tenants", value: rate, unit: "events/s",
                raw: referenceRate, rawLabel: referenceRate.map { _ in "1 process" })
        } else {
            BenchSupport.record(
                "drain", "\(tenants) tenants\(warmUp ? " already active" : "") mixed per batch\(setting)", value: rate, unit: "events/s",
                raw: referenceRate,
                rawLabel: referenceRate.map { _ in "20 tenants" },
                target: tenants >= 50_000 ? "≥ 60 % of 20 tenants" : tenants >= 5_000 ? "≥ 80 % of 20 tenants" : nil)
        }
        if let aggregatorMetrics, let phases = try? await BenchSupport.aggregatorPhases(aggregatorMetrics) {
            print("drain: where the aggregator's time went: " + BenchSupport.phaseBreakdown(phases))
        }
        if let aggregatorPid, let peak = BenchSupport.peakRSS(aggregatorPid) {
            print("drain: aggregator peak RSS \(peak / 1024) MiB (VmHWM; started for this drain)")
        }
        var rawRate: Double?
        if raw, processes == nil {
            do {
                rawRate = try await measureRaw(drained: rate, database: database)
            } catch {
                await DrainRun.cleanUpAfterFailure(runID, on: database)
                await database.close()
                throw error
            }
        }
        let deleted = try await DrainRun.cleanUp(runID, on: database)
        // Vacuumed now, not by autovacuum during the next drain: on the dev database after a
        // day of test runs (5.6 million event ids), that took the next drain's CPU (bench
        // tenants gave 55–59 % at 5,000 tenants where the same drain alone gave 88 %).
        try await TenantUsage.vacuum(on: database)
        await database.close()
        print("drain: run \(runID) deleted (\(deleted) tenants and their usage) and its tables vacuumed")
        print("drain-rate: \(BenchSupport.format(rate))")
        if let rawRate { print("drain-raw-rate: \(BenchSupport.format(rawRate))") }
    }

    /// The database alone at this spread: as many events as the drain, over the run's own
    /// tenants in the same round-robin, COPYed and deduplicated into `usage_event_ids` and
    /// `usage_events` 10,000 a transaction (the most tenant-hours the Aggregator writes in
    /// one) on two connections at once (its two consumers), with no rollups, period totals, locks or evaluation. Beside the drain it says
    /// how much of the drain's fall with more tenants is the events' own indexes (each
    /// event's `(tenant_id, occurred_at)` entry lands at its own place among 50,000
    /// tenants' ranges) and how much is the Aggregator's per-tenant rows. Run after the
    /// drain, on a metric of its own; the run's clean-up deletes the rows with the tenants.
    private func measureRaw(drained rate: Double, database: PostgresConnection) async throws -> Double {
        let tenantIDs = try await database.query(
            """
            SELECT id FROM tenants WHERE name LIKE $1
             ORDER BY substr(name, length($2::text) + 1)::int
            """, [DrainRun.namePattern(runID), DrainRun.namePrefix(runID)]
        ).map { try $0.decode(0, as: UUID.self) }
        guard tenantIDs.count == tenants else {
            throw ValidationError("found \(tenantIDs.count) tenants of run \(runID) instead of \(tenants)")
        }
        // Two connections side by side, as the Aggregator's two consumers (AGGREGATOR_CONSUMERS).
        let second = try await DrainRun.database()
        let rawRate: Double
        do {
            rawRate = try await BenchSupport.rawCopyDedup(
                events: events, tenants: tenantIDs, metric: DrainRun.metric + "_raw", perTransaction: 10_000, connections: [database, second])
            await second.close()
        } catch {
            await second.close()
            throw error
        }
        var line =
            "drain: raw COPY + dedup of \(events) events over the same \(tenants) tenants (usage_event_ids, then usage_events; "
            + "10,000 a transaction, 2 connections; no rollups, totals or evaluation): \(BenchSupport.format(rawRate)) rows/s; "
            + "the drain is \(String(format: "%.0f", 100 * rate / rawRate))% of it"
        if let referenceRawRate {
            line +=
                "; raw over \(tenants) tenants is \(String(format: "%.0f", 100 * rawRate / referenceRawRate))% of raw over 20 "
                + "(\(BenchSupport.format(referenceRawRate)) rows/s)"
        }
        print(line)
        BenchSupport.record(
            "drain", "raw COPY + dedup, \(tenants) tenants\(warmUp ? " already active" : "") mixed", value: rawRate, unit: "rows/s",
            raw: referenceRawRate, rawLabel: referenceRawRate.map { _ in "20 tenants" })
        return rawRate
    }

    /// Polls until the run's events are all stored; returns their count and the seconds
    /// from the first insert to the last.
    ///
    /// The count joins the run's tenants to the events, a scan that every 100 ms would take
    /// CPU from the Aggregator it measures (the broker, the database and the Aggregator
    /// share 2 cores; with 80 messages prefetched the queue looks empty for the last 40 %
    /// of a drain). So the Aggregator's own counters say when it has settled every event
    /// (`--aggregator-metrics`), and the count runs once to confirm; without them, only
    /// once `aggregator.usage` holds no ready message (a passive declare costs nothing).
    private func waitForStored(_ database: PostgresConnection) async throws -> (count: Int, seconds: Double) {
        let broker = try await AMQPConnection.connect(configuration: try BenchSupport.broker(), logger: BenchSupport.logger)
        do {
            try await broker.openChannel(1)
            let stored = try await poll(broker: broker, database: database)
            await broker.close()
            return stored
        } catch {
            await broker.close()
            throw error
        }
    }

    private func poll(broker: AMQPConnection, database: PostgresConnection) async throws -> (count: Int, seconds: Double) {
        let deadline = ContinuousClock.now + Self.deadline
        var ready: UInt32 = 0
        var stored = 0
        var analyzed = false
        // An Aggregator started for this drain says when it has settled every event, at no
        // cost to the database; the count below then confirms it once.
        if let aggregatorMetrics {
            try await BenchSupport.waitForSettled(
                events + (warmUp ? tenants : 0), after: 0, metrics: aggregatorMetrics, within: Self.deadline)
        }
        while ContinuousClock.now < deadline {
            ready = try await broker.declareQueue(QueueName.aggregatorUsage, passive: true)
            if ready == 0 {
                // Statistics first: right after a drain they say the run's tenants and events
                // are a handful (the last run's were deleted and vacuumed), and the count was
                // planned as a scan of every event per tenant — minutes at 50,000 tenants.
                if !analyzed {
                    try await database.query("ANALYZE tenants, usage_events")
                    analyzed = true
                }
                // With a warm-up, the rate is that of the measured events stored after the last
                // warm-up event (the two consumers may overlap at the boundary by a batch).
                let rows = try await database.query(
                    """
                    WITH run AS (
                        SELECT e.event_id LIKE $3 AS warm, e.received_at
                          FROM usage_events e JOIN tenants t ON t.id = e.tenant_id
                         WHERE t.name LIKE $1 AND e.metric = $2),
                    warmed AS (SELECT max(received_at) AS last, count(*) AS events FROM run WHERE warm)
                    SELECT count(*) FILTER (WHERE NOT warm),
                           count(*) FILTER (WHERE NOT warm AND (warmed.last IS NULL OR received_at > warmed.last)),
                           extract(epoch FROM max(received_at) FILTER (WHERE NOT warm)
                               - coalesce(warmed.last, min(received_at) FILTER (WHERE NOT warm)))::float8,
                           warmed.events
                      FROM run, warmed GROUP BY warmed.last, warmed.events
                    """, [DrainRun.namePattern(runID), DrainRun.metric, DrainRun.warmUpPrefix + "%"])
                stored = try rows.first?.decode(0, as: Int.self) ?? 0
                let warmed = try rows.first?.decode(3, as: Int.self) ?? 0
                if let row = rows.first, stored >= events, warmed >= (warmUp ? tenants : 0) {
                    guard let seconds = row.text(2).flatMap({ Double($0) }) else {
                        throw ValidationError("cannot read the insert times of the run's events")
                    }
                    return (try row.decode(1, as: Int.self), seconds)
                }
            }
            try await Task.sleep(for: Self.pollEvery)
        }
        throw ValidationError(
            "the Aggregator did not store the \(events) events of run \(runID) within 10 minutes (\(ready == 0 ? "\(stored) stored" : "\(ready) messages still queued")); "
                + "is it running? See .local/log/aggregator-bench.log, and parked_events for refused events.")
    }
}
