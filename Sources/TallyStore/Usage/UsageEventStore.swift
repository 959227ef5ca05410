import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// The usage events as the Aggregator stores a batch of them: staged first (`stage`, in
/// the batch's transaction or ahead of it), then, inside the batch's transaction, the
/// events of unknown tenants taken out
/// (`parkUnknownTenants`, `takeOutUnknownTenants`), then the rest stored exactly once
/// (`storeStaged`): their ids into `usage_event_ids`, the new events into `usage_events`,
/// folded into the hourly rollups (`usage_rollups`, `usage_rollup_values`) and into their
/// periods' totals (`UsagePeriodTotals`), all in one statement.
public enum UsageEventStore {
    /// The events of a tenant-hour that `storeStaged` stored for the first time.
    public struct StoredHour: Sendable {
        public let tenant: UUID
        public let metric: String
        public let count: Int
        /// The earliest and the latest time of those events.
        public let earliest: Date
        public let latest: Date
    }

    /// COPYs `rows` into the session's staging table — emptied first, unless `appending` to
    /// what was staged since it was last emptied (created the first time): COPY text rows
    /// of `tenant_id, event_id, metric, name, quantity, unit, occurred_at, occurred_month,
    /// metadata, message_id`, in that order.
    ///
    /// Outside a transaction the rows stay staged until the staging table is emptied (by
    /// the next `stage` that does not append): a batch can be staged a chunk at a time as
    /// it is decoded, ahead of the transactions that store it, and need not be held in
    /// memory whole. A batch staged so is stored by the next `storeStaged`.
    public static func stage(_ rows: [UInt8], appending: Bool = false, on connection: isolated PostgresConnection) throws {
        if !appending { try connection.executeScript(resetStaging) }
        guard !rows.isEmpty else { return }
        _ = try connection.copyIn(
            """
            COPY staged_usage (tenant_id, event_id, metric, name, quantity, unit, occurred_at, occurred_month, metadata,
            message_id) FROM STDIN
            """, text: rows)
    }

    /// Moves the staged events of `tenants`, found not to exist (`ConfigVersions`), to
    /// `parked_events`, with their reason, payload as they arrived, and `acceptedAt` (the
    /// batch's earliest acceptance); returns how many.
    public static func parkUnknownTenants(_ tenants: Set<UUID>, acceptedAt: Date?, on connection: isolated PostgresConnection) throws -> Int {
        try connection.query(parkUnknownTenantsStatement, [PostgresTextArray(tenants.map(\.lowercasedText)), acceptedAt]).affectedRows
    }

    /// Takes the staged events of `tenants`, found not to exist, out of the batch and
    /// returns them as they would be parked (for a later transaction to park them).
    public static func takeOutUnknownTenants(
        _ tenants: Set<UUID>, acceptedAt: Date?, on connection: isolated PostgresConnection
    ) throws -> [ParkedEvent] {
        try connection.query(takeOutUnknownTenantsStatement, [PostgresTextArray(tenants.map(\.lowercasedText))]).map { row in
            ParkedEvent(
                tenantID: row.text(0), eventID: row.text(1), code: "unknown_tenant", field: "tenant_id",
                reason: unknownTenantReason, payload: row.text(2) ?? "{}", messageID: row.text(3), acceptedAt: acceptedAt)
        }
    }

    /// Stores the staged events not stored before (by tenant and id) and folds them into
    /// the rollups and period totals; hands `eachHour` what was new, per tenant, metric and
    /// hour, as the statement returns it, and returns the totals they changed.
    ///
    /// The statement's rows are read a chunk at a time (a transaction of 50,000 tenants
    /// returns a row per tenant-hour and per total): only the totals are kept.
    public static func storeStaged(
        on connection: isolated PostgresConnection, eachHour: (StoredHour) -> Void
    ) throws -> [UsagePeriodTotals.StoredTotal] {
        var totals: [UsagePeriodTotals.StoredTotal] = []
        try connection.forEachChunk(insertAndRollUp) { rows in
            for row in rows {
                let tenant = try row.decode(1, as: UUID.self)
                let metric = try row.decode(2, as: String.self)
                let count = try row.decode(3, as: Int64.self)
                let from = try row.decode(4, as: Date.self)
                let to = try row.decode(5, as: Date.self)
                if try row.decode(0, as: Bool.self) {
                    totals.append(
                        UsagePeriodTotals.StoredTotal(
                            period: TenantPeriod(tenant: tenant, span: Period(start: Instant(from), end: Instant(to))), metric: metric,
                            eventCount: count, sum: row.text(6) ?? "0", max: row.text(7), latest: row.text(8)))
                } else {
                    eachHour(StoredHour(tenant: tenant, metric: metric, count: Int(count), earliest: from, latest: to))
                }
            }
        }
        return totals
    }

    /// Session-local, created once per connection and emptied by every `stage` that does
    /// not append (its rows outlive a commit: a batch is staged ahead of its transactions).
    /// TRUNCATE of a temporary table touches no other session.
    private static let resetStaging = """
        SET LOCAL client_min_messages = warning;
        CREATE TEMP TABLE IF NOT EXISTS staged_usage (
            tenant_id uuid, event_id text, metric text, name text, quantity numeric(17,4), unit text,
            occurred_at timestamptz, occurred_month date, metadata jsonb, message_id text
        ) ON COMMIT PRESERVE ROWS;
        TRUNCATE staged_usage;
        """

    private static let unknownTenantReason = "tenant_id names no tenant of this Tally"

    /// An unknown tenant's staged event as it arrived (its parked payload).
    private static let unknownTenantPayload = """
        jsonb_strip_nulls(jsonb_build_object(
            'id', event_id, 'tenant_id', tenant_id, 'type', metric, 'name', name, 'quantity', quantity::text,
            'unit', unit, 'time', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'metadata', metadata))::text
        """

    private static let parkUnknownTenantsStatement = """
        WITH unknown AS (
            DELETE FROM staged_usage s WHERE s.tenant_id IS NULL OR s.tenant_id = ANY($1::uuid[])
            RETURNING s.*
        )
        INSERT INTO parked_events (tenant_id, event_id, code, field, reason, payload, message_id, accepted_at)
        SELECT tenant_id::text, event_id, 'unknown_tenant', 'tenant_id', '\(unknownTenantReason)', \(unknownTenantPayload), message_id,
               $2::timestamptz
          FROM unknown
        """

    private static let takeOutUnknownTenantsStatement = """
        WITH unknown AS (
            DELETE FROM staged_usage s WHERE s.tenant_id IS NULL OR s.tenant_id = ANY($1::uuid[])
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
             -- The earliest time wins; ties go to the smallest metric, then quantity, then
             -- metadata (a unique_count's value), so the same batch counts the same event
             -- whatever order its rows were sorted in. The later keys are compared only on ties.
             ORDER BY s.tenant_id, s.event_id, s.occurred_at, s.metric COLLATE "C", s.quantity, s.metadata
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
        SELECT false, tenant_id, metric, c, lo, hi, NULL::text, NULL::text, NULL::text FROM hourly
        UNION ALL
        SELECT true, tenant_id, metric, c, period_start, period_end, s, mx, lq FROM period_totals
        """
}
