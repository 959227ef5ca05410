import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// Billing runs (`billing_runs`) and their items (`billing_run_items`, one per subscription
/// period or adjustment a run invoices): their planning, their progress, and the marks the
/// Invoicer leaves on each item (issued, skipped, failed).
public enum BillingRunRecords {
    /// An item to plan: a period (or an adjustment) of a subscription.
    public struct PlannedItem: Sendable, Equatable {
        public let subscription: UUID
        public let periodIndex: Int64
        public let periodStart: Instant
        public let kind: String

        public init(subscription: UUID, periodIndex: Int64, periodStart: Instant, kind: String) {
            self.subscription = subscription
            self.periodIndex = periodIndex
            self.periodStart = periodStart
            self.kind = kind
        }
    }

    /// What became of one item: `issued` with its invoice, `skipped` or `failed` with why.
    public struct ItemMark: Sendable, Equatable {
        public let run: UUID
        public let subscription: UUID
        public let periodIndex: Int64
        public let invoice: UUID?
        public let status: String
        public let error: String?

        public init(run: UUID, subscription: UUID, periodIndex: Int64, invoice: UUID?, status: String, error: String?) {
            self.run = run
            self.subscription = subscription
            self.periodIndex = periodIndex
            self.invoice = invoice
            self.status = status
            self.error = error
        }
    }

    /// A run's items counted by status.
    public struct Counts: Sendable, Equatable {
        public let asOf: Date
        public let due: Int
        /// Items whose invoice this run issued.
        public let issued: Int
        /// Items whose period another run (running at the same time, or earlier) had invoiced.
        public let alreadyIssued: Int
        public let failed: Int
        public let pending: Int
        public let skipped: Int
    }

    /// Runs over every Invoicer: those running (items pending), the age of the oldest, and
    /// those of the last 7 days that left items failed.
    public struct Summary: Sendable, Equatable {
        public let running: Int
        public let oldestRunningSeconds: Int
        public let withFailuresLastWeek: Int
    }

    /// Inserts a run at `asOf` of `dueCount` items; returns its id. In the planning transaction.
    public static func insert(asOf: Date, dueCount: Int, on connection: isolated PostgresConnection) throws -> UUID {
        try connection.query(
            "INSERT INTO billing_runs (as_of, due_count) VALUES ($1, $2) RETURNING id", [asOf, dueCount])[0]
            .decode(0, as: UUID.self)
    }

    /// Inserts one `failed` item (period 0) per subscription that could not be planned, with
    /// why; one statement in the planning transaction.
    public static func insertFailedItems(
        run: UUID, _ refused: [(subscription: UUID, reason: String)], on connection: isolated PostgresConnection
    ) throws {
        try connection.query(
            """
            INSERT INTO billing_run_items (billing_run_id, subscription_id, period_index, status, error)
            SELECT $1, s, 0, 'failed', e FROM unnest($2::uuid[], $3::text[]) AS u (s, e)
            """,
            [run, PostgresTextArray(refused.map(\.subscription.lowercasedText)), PostgresTextArray(refused.map(\.reason))])
    }

    /// Marks a run with nothing to issue completed, in the planning transaction.
    public static func complete(_ run: UUID, on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE billing_runs SET status = 'completed', completed_at = now() WHERE id = $1", [run])
    }

    /// Inserts the run's items (pending), one statement in the planning transaction.
    public static func insertItems(run: UUID, _ items: [PlannedItem], on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            INSERT INTO billing_run_items (billing_run_id, subscription_id, period_index, period_start, kind)
            SELECT $1, s, i, p, k FROM unnest($2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[]) AS u (s, i, p, k)
            """,
            [
                run, PostgresTextArray(items.map(\.subscription.lowercasedText)), PostgresTextArray(items.map { String($0.periodIndex) }),
                PostgresTextArray(items.map(\.periodStart.description)), PostgresTextArray(items.map(\.kind)),
            ])
    }

    /// The run's `as_of`, its row locked for the caller's transaction (a re-run); nil when
    /// there is no such run.
    public static func lockAsOf(_ run: UUID, on connection: isolated PostgresConnection) throws -> Date? {
        guard let row = try connection.query("SELECT as_of FROM billing_runs WHERE id = $1 FOR UPDATE", [run]).first else { return nil }
        return try row.decode(0, as: Date.self)
    }

    /// The tenants of the run's failed items.
    public static func tenantsOfFailedItems(_ run: UUID, on connection: isolated PostgresConnection) throws -> [UUID] {
        try connection.query(
            """
            SELECT DISTINCT s.tenant_id FROM billing_run_items i JOIN subscriptions s ON s.id = i.subscription_id
             WHERE i.billing_run_id = $1 AND i.status = 'failed'
            """, [run]
        ).map { try $0.decode(0, as: UUID.self) }
    }

    /// Marks the run's failed items `skipped`, superseded by run `newRun`, in the re-run's transaction.
    public static func supersedeFailedItems(of run: UUID, by newRun: UUID, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            UPDATE billing_run_items SET status = 'skipped', error = 'superseded by billing run ' || $2::text, updated_at = now()
             WHERE billing_run_id = $1 AND status = 'failed'
            """, [run, newRun.uuidString.lowercased()])
    }

    /// Whether the run exists.
    public static func exists(_ run: UUID, on connection: isolated PostgresConnection) throws -> Bool {
        try !connection.query("SELECT 1 FROM billing_runs WHERE id = $1", [run]).isEmpty
    }

    /// Up to `limit` run ids, newest first, after the run `after` (keyset on `(created_at, id)`).
    public static func ids(after: UUID?, limit: Int, on connection: isolated PostgresConnection) throws -> [UUID] {
        try connection.query(
            """
            SELECT id FROM billing_runs
             WHERE $1::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM billing_runs WHERE id = $1)
             ORDER BY created_at DESC, id DESC LIMIT $2
            """, [after, limit]
        ).map { try $0.decode(0, as: UUID.self) }
    }

    /// One item of a run: its status, its invoice once issued, and why it failed or was
    /// skipped; nil when the run has no such item.
    public static func item(
        run: UUID, subscription: UUID, periodIndex: Int64, on connection: isolated PostgresConnection
    ) throws -> (status: String, invoiceID: UUID?, error: String?)? {
        guard
            let row = try connection.query(
                "SELECT status, invoice_id, error FROM billing_run_items WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3",
                [run, subscription, periodIndex]
            ).first
        else { return nil }
        return (try row.decode(0), try row.decode(1, as: UUID?.self), try row.decode(2, as: String?.self))
    }

    /// The run's `as_of`, due count and items by status; nil when there is no such run.
    public static func counts(_ run: UUID, on connection: isolated PostgresConnection) throws -> Counts? {
        guard
            let row = try connection.query(
                """
                SELECT r.as_of, r.due_count,
                       count(*) FILTER (WHERE i.status = 'issued' AND v.billing_run_id = r.id), count(*) FILTER (WHERE i.status = 'failed'),
                       count(*) FILTER (WHERE i.status = 'pending'), count(*) FILTER (WHERE i.status = 'skipped'),
                       count(*) FILTER (WHERE i.status = 'issued' AND v.billing_run_id IS DISTINCT FROM r.id)
                  FROM billing_runs r LEFT JOIN billing_run_items i ON i.billing_run_id = r.id
                  LEFT JOIN invoices v ON v.id = i.invoice_id
                 WHERE r.id = $1 GROUP BY r.id
                """, [run]
            ).first
        else { return nil }
        return Counts(
            asOf: try row.decode(0), due: try row.decode(1), issued: try row.decode(2), alreadyIssued: try row.decode(6),
            failed: try row.decode(3), pending: try row.decode(4, as: Int.self), skipped: try row.decode(5))
    }

    /// The `as_of` of each of `runs` that exists.
    public static func asOf(of runs: Set<UUID>, on connection: isolated PostgresConnection) throws -> [UUID: Date] {
        var asOf: [UUID: Date] = [:]
        for row in try connection.query(
            "SELECT id, as_of FROM billing_runs WHERE id = ANY($1::uuid[])",
            [PostgresTextArray(runs.map(\.lowercasedText))])
        {
            asOf[try row.decode(0, as: UUID.self)] = try row.decode(1, as: Date.self)
        }
        return asOf
    }

    /// The invoice already issued for the item, if any.
    public static func issuedInvoice(
        run: UUID, subscription: UUID, periodIndex: Int64, on connection: isolated PostgresConnection
    ) throws -> UUID? {
        guard
            let existing = try connection.query(
                """
                SELECT invoice_id FROM billing_run_items
                 WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3 AND invoice_id IS NOT NULL
                """, [run, subscription, periodIndex]
            ).first
        else { return nil }
        return try existing.decode(0, as: UUID.self)
    }

    /// Marks the items of a batch, one statement in the caller's (the batch's) transaction.
    public static func mark(_ marks: [ItemMark], on connection: isolated PostgresConnection) throws {
        guard !marks.isEmpty else { return }
        func text(_ transform: (ItemMark) -> String?) -> PostgresTextArray { PostgresTextArray(marks.map { transform($0) ?? "" }) }
        try connection.query(
            """
            UPDATE billing_run_items i
               SET status = u.status, invoice_id = nullif(u.invoice, '')::uuid, error = nullif(u.error, ''), updated_at = now()
              FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                   AS u (run, subscription, period_index, invoice, status, error)
             WHERE i.billing_run_id = u.run AND i.subscription_id = u.subscription AND i.period_index = u.period_index
            """,
            [
                text { $0.run.uuidString }, text { $0.subscription.uuidString }, text { String($0.periodIndex) }, text { $0.invoice?.uuidString },
                text(\.status), text(\.error),
            ])
    }

    /// Marks one item, in the caller's transaction.
    public static func mark(_ mark: ItemMark, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            UPDATE billing_run_items SET status = $5, invoice_id = $4, error = $6, updated_at = now()
             WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3
            """, [mark.run, mark.subscription, mark.periodIndex, mark.invoice, mark.status, mark.error])
    }

    /// Marks the item failed with `reason` if it is still pending (its command was parked):
    /// one statement, on its own.
    public static func markFailedIfPending(
        run: UUID, subscription: UUID, periodIndex: Int64, reason: String, on connection: isolated PostgresConnection
    ) throws {
        try connection.query(
            """
            UPDATE billing_run_items SET status = 'failed', error = $4, updated_at = now()
             WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3 AND status = 'pending'
            """, [run, subscription, periodIndex, reason])
    }

    /// Running runs, the age of the oldest, and runs of the last week with failed items;
    /// one statement on any pooled connection.
    public static func summary(on pool: PostgresPool) async throws -> Summary {
        // A run is running while it has pending items (`BillingRunStatus`); both
        // statuses read here have a partial index of their own.
        let row = try await pool.query(
            """
            SELECT count(DISTINCT r.id) FILTER (WHERE i.status = 'pending'),
                   coalesce(extract(epoch FROM now() - min(r.created_at) FILTER (WHERE i.status = 'pending'))::bigint, 0),
                   count(DISTINCT r.id) FILTER (WHERE i.status = 'failed' AND r.created_at > now() - interval '7 days')
              FROM billing_run_items i JOIN billing_runs r ON r.id = i.billing_run_id
             WHERE i.status IN ('pending', 'failed')
            """)[0]
        return Summary(
            running: try row.decode(0, as: Int.self), oldestRunningSeconds: try row.decode(1, as: Int.self),
            withFailuresLastWeek: try row.decode(2, as: Int.self))
    }
}
