import CivilTime
import Foundation
import Metering
import PostgresClient
import TallyStore

/// What one committed batch changed.
struct LedgerOutcome: Sendable {
    /// Events stored for the first time.
    var inserted = 0
    /// Events whose (tenant, id) was already stored: counted before, skipped now.
    var duplicates = 0
    /// Events parked in `parked_events` (invalid, or of an unknown tenant).
    var parked = 0
    /// Newly stored events per tenant and metric (for quota state and alerts).
    var insertedByTenant: [UUID: [String: Int]] = [:]
    /// For each tenant, the earliest and latest time of its newly stored events in
    /// every hour they touch: enough to find every billing period the batch changed.
    var timesByTenant: [UUID: Set<Date>] = [:]
    /// The touched tenants' usage against their quotas, to broadcast after the commit.
    var quotaStates: [QuotaState] = []
    /// Events of tenants that do not exist, taken out of the batch but not parked (when
    /// the ledger was asked to leave that to a later transaction of the same batch).
    var unknownTenantEvents: [ParkedEvent] = []
    /// Billing events written to the outbox in this transaction.
    var billingEvents = 0
    /// The periods this transaction completed (or found complete) before storing the events.
    var completedPeriods: Set<TenantPeriod> = []
    /// Seconds per phase of the transaction (the commit included).
    var phases: [UsageLedger.Phase: Double] = [:]
}

/// Writes decoded usage into PostgreSQL exactly once, in one transaction:
///
/// 1. COPY the batch into a session-local staging table;
/// 2. park the events of tenants that do not exist (with their reason);
/// 3. insert the ids into `usage_event_ids` with `ON CONFLICT DO NOTHING` (the dedup on
///    tenant and id, whatever the event's month; within one batch the earliest time of
///    an id wins), insert only the events whose id that returned into `usage_events`,
///    and fold only those into the hourly rollups,
///    in a consistent (tenant, metric, hour) order so concurrent consumers never
///    deadlock on rollup rows;
/// 4. store the invalid events in `parked_events`;
///    and into the completed period totals of their tenants (`UsagePeriodTotals`);
/// 5. evaluate quotas and alerts of the tenants whose usage grew.
///
/// Before all that, the periods the events fall in are completed (`UsagePeriodTotals`)
/// in a short transaction of its own under the tenants' exclusive usage locks; the batch's
/// transaction then holds them shared, so each period's totals stay equal to an
/// aggregation of its events while batches of one tenant store side by side.
///
/// The caller acks the messages only after this commits; a redelivery after a
/// crash finds its events already stored and counts nothing twice.
enum UsageLedger {
    /// Writes `batch`; then, in the same transaction, evaluates the touched tenants'
    /// quotas and alerts (`UsageStateEvaluator`) so a firing commits with its usage.
    /// Events of tenants that do not exist are parked, unless `parkingUnknownTenants` is
    /// false: then they are only taken out and returned (`unknownTenantEvents`), for the
    /// batch's last transaction to park — a batch written in parts is retried whole after
    /// a part failed, and its earlier parts must not park the same events again.
    static func record(
        _ batch: DecodedBatch, now: Date, cache: UsageConfigCache = UsageConfigCache(), parkingUnknownTenants: Bool = true,
        on connection: PostgresConnection
    ) async throws -> LedgerOutcome {
        let staged = batch.stagedRows.buffer
        let parkedRows = parkedCopyRows(batch.parkedEvents)
        let started = ContinuousClock.now
        let stagedTimes = batch.stagedTimes
        let tenants = stagedTimes.keys.sorted { $0.precedes($1) }
        // Periods to complete first, in a short transaction of their own: their tenants'
        // locks exclusive only while the periods are completed — not while the batch's
        // events are stored — so batches of the same tenants wait for one another only
        // that long (a drain's first batches all meet new tenants).
        let completion = tenants.isEmpty ? Completion() : try await complete(stagedTimes, tenants: tenants, cache: cache, on: connection)
        var outcome = try await connection.withTransaction { connection in
            var outcome = LedgerOutcome(parked: batch.parkedEvents.count)
            outcome.phases = completion.phases
            var clock = PhaseClock()
            if !parkedRows.isEmpty {
                _ = try connection.copyIn(
                    "COPY parked_events (tenant_id, event_id, code, field, reason, payload, message_id) FROM STDIN",
                    text: parkedRows)
            }
            guard !staged.isEmpty else { return outcome }
            // Staged first (session-local: no lock needed), then the tenants' usage locks
            // (shared: transactions storing events of a tenant do not wait for one another)
            // and their configuration as committed now.
            try connection.executeScript(createStaging)
            _ = try connection.copyIn(
                """
                COPY staged_usage (tenant_id, event_id, metric, name, quantity, unit, occurred_at, occurred_month, metadata,
                message_id) FROM STDIN
                """, text: staged)
            clock.lap(.copy, into: &outcome.phases)
            try UsagePeriodTotals.lockUsage(tenants, exclusive: [], on: connection)
            let config = try cache.snapshot(for: tenants, on: connection)
            clock.lap(.lockAndConfiguration, into: &outcome.phases)
            // Every period the events fall in is complete by now, unless the configuration
            // changed since (a subscription created in between): then the lock is upgraded
            // and the period completed here. Tenants that do not exist have nothing to
            // complete (their events are parked below).
            let missing = cache.notKnownComplete(Self.periods(stagedTimes, config: config))
                .filter { !completion.absentTenants.contains($0.tenant) }
            if !missing.isEmpty {
                let upgrade = Set(missing.map(\.tenant))
                try UsagePeriodTotals.lockUsage(upgrade.sorted { $0.precedes($1) }, exclusive: upgrade, on: connection)
                outcome.completedPeriods = try UsagePeriodTotals.complete(missing, on: connection)
            }
            clock.lap(.completePeriods, into: &outcome.phases)
            if parkingUnknownTenants {
                outcome.parked += try connection.query(parkUnknownTenants).affectedRows
            } else {
                outcome.unknownTenantEvents = try connection.query(takeOutUnknownTenants).map { row in
                    ParkedEvent(
                        tenantID: row.text(0), eventID: row.text(1), code: "unknown_tenant", field: "tenant_id",
                        reason: unknownTenantReason, payload: row.text(2) ?? "{}", messageID: row.text(3))
                }
            }
            for row in try connection.query(insertAndRollUp) {
                let tenant = try row.decode(0, as: UUID.self)
                let count = try row.decode(2, as: Int.self)
                outcome.insertedByTenant[tenant, default: [:]][try row.decode(1, as: String.self), default: 0] += count
                outcome.inserted += count
                outcome.timesByTenant[tenant, default: []].formUnion([try row.decode(3, as: Date.self), try row.decode(4, as: Date.self)])
            }
            outcome.duplicates =
                batch.eventCount - outcome.inserted - (outcome.parked - batch.parkedEvents.count)
                - outcome.unknownTenantEvents.count
            clock.lap(.insertAndRollUp, into: &outcome.phases)
            if !outcome.timesByTenant.isEmpty {
                try UsagePeriodTotals.lockEvaluation(
                    outcome.timesByTenant.keys.sorted { $0.precedes($1) }, on: connection)
                let evaluation = try UsageStateEvaluator.evaluate(outcome.timesByTenant, config: config, now: now, on: connection)
                outcome.quotaStates = evaluation.quotaStates
                outcome.billingEvents = evaluation.billingEvents
            }
            clock.lap(.evaluate, into: &outcome.phases)
            return outcome
        }
        // Known complete only once committed (a rollback takes the completion back).
        cache.rememberComplete(outcome.completedPeriods)
        let inside = outcome.phases.values.reduce(0, +)
        outcome.phases[.commit] = max(0, (ContinuousClock.now - started).seconds - inside)
        return outcome
    }

    /// What the completion transaction did.
    struct Completion {
        var phases: [Phase: Double] = [:]
        /// Tenants of the batch that do not exist (nothing of theirs can be completed).
        var absentTenants: Set<UUID> = []
    }

    /// Completes, in a transaction of its own, the periods the events at `times` fall in
    /// that this process does not know complete: the tenants' usage locks exclusive (a
    /// completion must not interleave with a transaction storing the tenant's events), the
    /// configuration read under them, the periods completed, the commit. Nothing when the
    /// cache knows every period complete.
    private static func complete(
        _ times: [UUID: Set<Date>], tenants: [UUID], cache: UsageConfigCache, on connection: PostgresConnection
    ) async throws -> Completion {
        let (cached, unknown) = cache.peek(tenants)
        let guessed = Set(
            periods(times, config: cached).filter { unknown.contains($0.tenant) || !cache.isKnownComplete($0) }
                .map(\.tenant)
        ).union(unknown)
        guard !guessed.isEmpty else { return Completion() }
        let locked = tenants.filter(guessed.contains)
        let (completion, completed) = try await connection.withTransaction { connection in
            var completion = Completion()
            var clock = PhaseClock()
            try UsagePeriodTotals.lockUsage(locked, exclusive: guessed, on: connection)
            let config = try cache.snapshot(for: locked, on: connection)
            clock.lap(.lockAndConfiguration, into: &completion.phases)
            let wanted = cache.notKnownComplete(periods(times.filter { guessed.contains($0.key) }, config: config))
            let completed = try UsagePeriodTotals.complete(wanted, on: connection)
            completion.absentTenants = Set(wanted.map(\.tenant)).subtracting(completed.map(\.tenant))
            clock.lap(.completePeriods, into: &completion.phases)
            return (completion, completed)
        }
        cache.rememberComplete(completed)
        return completion
    }

    /// The periods (billing period, trial or calendar month) the events at `times` fall in.
    static func periods(_ times: [UUID: Set<Date>], config: UsageConfigCache.Snapshot) -> Set<TenantPeriod> {
        Set(
            UsageStateEvaluator.touches(times, config: config).flatMap { tenant, touches in
                touches.map { TenantPeriod(tenant: tenant, span: $0.span) }
            })
    }

    /// Where a batch's time goes, for `/metrics` (the end-to-end breakdown of the benchmark).
    enum Phase: String, CaseIterable, Sendable {
        case decode, copy
        case lockAndConfiguration = "lock_and_configuration"
        case completePeriods = "complete_periods"
        case insertAndRollUp = "insert_and_roll_up"
        case evaluate, commit
    }

    /// Seconds since the last lap.
    struct PhaseClock {
        private var last = ContinuousClock.now

        mutating func lap(_ phase: Phase, into phases: inout [Phase: Double]) {
            let now = ContinuousClock.now
            phases[phase, default: 0] += (now - last).seconds
            last = now
        }
    }

    private static func parkedCopyRows(_ events: [ParkedEvent]) -> [UInt8] {
        var writer = CopyTextWriter()
        for event in events {
            writer.field(event.tenantID)
            writer.field(event.eventID)
            writer.field(event.code)
            writer.field(event.field)
            writer.field(event.reason)
            writer.field(event.payload)
            writer.field(event.messageID)
            writer.endRow()
        }
        return writer.buffer
    }

    /// Session-local, emptied at every commit; created once per connection.
    private static let createStaging = """
        SET LOCAL client_min_messages = warning;
        CREATE TEMP TABLE IF NOT EXISTS staged_usage (
            tenant_id uuid, event_id text, metric text, name text, quantity numeric(17,4), unit text,
            occurred_at timestamptz, occurred_month date, metadata jsonb, message_id text
        ) ON COMMIT DELETE ROWS;
        """

    private static let unknownTenantReason = "tenant_id names no tenant of this Tally"

    /// An unknown tenant's staged event as it arrived (its parked payload).
    private static let unknownTenantPayload = """
        jsonb_strip_nulls(jsonb_build_object(
            'id', event_id, 'tenant_id', tenant_id, 'type', metric, 'name', name, 'quantity', quantity::text,
            'unit', unit, 'time', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'metadata', metadata))::text
        """

    /// The staged events' tenants that do not exist, each looked up by its key: as
    /// NOT EXISTS, the planner hashed the whole `tenants` table for every batch
    /// (135 ms with 431,000 tenants), a cost growing with the tenants, not the batch.
    private static let unknownStagedTenants = """
        SELECT d.tenant_id FROM (SELECT DISTINCT tenant_id FROM staged_usage) AS d
          LEFT JOIN LATERAL (SELECT true AS known FROM tenants t WHERE t.id = d.tenant_id LIMIT 1) AS k ON true
         WHERE k.known IS NULL
        """

    private static let parkUnknownTenants = """
        WITH unknown AS (
            DELETE FROM staged_usage s WHERE s.tenant_id IS NULL OR s.tenant_id IN (\(unknownStagedTenants))
            RETURNING s.*
        )
        INSERT INTO parked_events (tenant_id, event_id, code, field, reason, payload, message_id)
        SELECT tenant_id::text, event_id, 'unknown_tenant', 'tenant_id', '\(unknownTenantReason)', \(unknownTenantPayload), message_id
          FROM unknown
        """

    private static let takeOutUnknownTenants = """
        WITH unknown AS (
            DELETE FROM staged_usage s WHERE s.tenant_id IS NULL OR s.tenant_id IN (\(unknownStagedTenants))
            RETURNING s.*
        )
        SELECT tenant_id::text, event_id, \(unknownTenantPayload), message_id FROM unknown
        """

    /// The dedup insert and the rollup fold in one statement: data-modifying CTEs
    /// run exactly once, and the rollups see only what the insert returned.
    /// `latest` keeps the greatest (time, id, quantity), ids compared bytewise
    /// (COLLATE "C") as the billing engine compares them.
    private static let insertAndRollUp = """
        WITH fresh AS (
            INSERT INTO usage_event_ids (tenant_id, event_id)
            -- In the key's order (id first: UUIDv7 ids append at the index's end, whatever
            -- the tenants); a repeat within the batch conflicts with the first.
            SELECT tenant_id, event_id FROM staged_usage ORDER BY 2, 1
            ON CONFLICT DO NOTHING
            RETURNING tenant_id, event_id
        ), inserted AS (
            INSERT INTO usage_events (tenant_id, event_id, metric, name, quantity, unit, occurred_at, occurred_month,
                                      metadata, message_id)
            SELECT DISTINCT ON (s.tenant_id, s.event_id)
                   s.tenant_id, s.event_id, s.metric, s.name, s.quantity, s.unit, s.occurred_at, s.occurred_month, s.metadata,
                   s.message_id
              FROM staged_usage s JOIN fresh f ON f.tenant_id = s.tenant_id AND f.event_id = s.event_id
             ORDER BY s.tenant_id, s.event_id, s.occurred_at
            RETURNING tenant_id, event_id, metric, quantity, occurred_at, metadata
        ), hourly AS (
            -- Per tenant, metric and hour: the sums by window over the hour, and the latest
            -- event — the greatest (time, id bytewise, quantity) — as the first row of each
            -- hour in one sort (DISTINCT ON), not one sort per aggregate and group.
            SELECT DISTINCT ON (tenant_id, metric, date_trunc('hour', occurred_at, 'UTC'))
                   tenant_id, metric, date_trunc('hour', occurred_at, 'UTC') AS hour,
                   sum(quantity) OVER w AS s, count(*) OVER w AS c, max(quantity) OVER w AS mx,
                   min(occurred_at) OVER w AS lo, max(occurred_at) OVER w AS hi,
                   occurred_at AS la, event_id AS li, quantity AS lq
              FROM inserted
            WINDOW w AS (PARTITION BY tenant_id, metric, date_trunc('hour', occurred_at, 'UTC'))
             ORDER BY tenant_id, metric, date_trunc('hour', occurred_at, 'UTC'), occurred_at DESC, event_id COLLATE "C" DESC,
                      quantity DESC
        ), rolled AS (
            INSERT INTO usage_rollups AS r (tenant_id, metric, hour, quantity_sum, event_count, quantity_max,
                                            latest_at, latest_event_id, latest_quantity, updated_at)
            SELECT tenant_id, metric, hour, s, c, mx, la, li, lq, now()
              FROM hourly
             ORDER BY 1, 2, 3
            ON CONFLICT (tenant_id, metric, hour) DO UPDATE SET
                \(UsagePeriodTotals.mergeAggregates(into: "r")),
                updated_at = now()
            RETURNING 1
        ), valued AS (
            INSERT INTO usage_rollup_values (tenant_id, metric, hour, value)
            SELECT DISTINCT i.tenant_id, i.metric, date_trunc('hour', i.occurred_at, 'UTC'), tally_unique_value(i.metadata ->> m.unique_field)
              FROM inserted i
              JOIN billable_metrics m ON m.code = i.metric AND m.aggregation = 'unique_count'
             WHERE jsonb_typeof(i.metadata -> m.unique_field) IN ('string', 'number', 'boolean')
             ORDER BY 1, 2, 3, 4
            ON CONFLICT DO NOTHING
            RETURNING 1
        ), \(UsagePeriodTotals.addInsertedEvents)
        SELECT tenant_id, metric, c, lo, hi FROM hourly
        """
}
