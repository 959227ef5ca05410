import Foundation
import PostgresClient

/// The monthly partitions of `usage_events` (`usage_events_YYYY_MM`): created ahead of the
/// times events may carry, listed, and detached once no event of their month can still
/// arrive; and the dedup ids (`usage_event_ids`) forgotten after their retention.
public enum UsagePartitions {
    /// How long after a month's end its events may still arrive (the 90-day age limit plus margin).
    public static let dedupWindowDays = 97

    /// How long an event id is remembered for dedup after it was first stored: the 90
    /// days the edge accepts an event's time, and a margin.
    public static let idRetention = "100 days"

    /// Creates the missing partitions from 4 months before `now` to 2 months after it;
    /// returns how many.
    public static func ensure(around now: Date, on database: PostgresPool) async throws -> Int {
        try await database.query(
            """
            SELECT tally_ensure_usage_partitions(($1::timestamptz - interval '4 months')::date, ($1::timestamptz + interval '2 months')::date)
            """, [now])[0].decode(0, as: Int.self)
    }

    /// Deletes up to `limit` ids first seen more than `idRetention` ago; returns how many
    /// (fewer than `limit`: none are left).
    public static func forgetExpiredIDs(limit: Int, on database: PostgresPool) async throws -> Int {
        try await database.query(
            """
            DELETE FROM usage_event_ids WHERE ctid = ANY (ARRAY(
                SELECT ctid FROM usage_event_ids WHERE first_seen < now() - interval '\(idRetention)' LIMIT \(limit)))
            """
        ).affectedRows
    }

    /// One attached partition.
    public struct Partition: Sendable {
        public let table: String
        /// `YYYY-MM`.
        public let month: String
        /// PostgreSQL's estimate (`reltuples`), 0 when never analyzed.
        public let rowsEstimate: Int
        /// Its size with indexes, as `pg_size_pretty` says it.
        public let size: String
        /// Whether its month ended more than `dedupWindowDays` before `now`.
        public let detachable: Bool
    }

    /// The attached partitions, oldest first.
    public static func list(now: Date, on database: PostgresPool) async throws -> [Partition] {
        try await database.query(
            """
            SELECT c.relname, to_char(to_date(substr(c.relname, 14), 'YYYY_MM'), 'YYYY-MM'), c.reltuples::bigint,
                   pg_size_pretty(pg_total_relation_size(c.oid)),
                   (to_date(substr(c.relname, 14), 'YYYY_MM') + interval '1 month' + make_interval(days => $1)) < $2
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'usage_events'::regclass ORDER BY c.relname
            """, [dedupWindowDays, now]
        ).map { row in
            Partition(
                table: row.text(0) ?? "", month: row.text(1) ?? "?", rowsEstimate: max(0, Int(row.text(2) ?? "0") ?? 0),
                size: row.text(3) ?? "", detachable: row.text(4) == "t")
        }
    }

    /// Whether `month` (`YYYY-MM`) is an attached partition, and whether it may be detached.
    public static func state(of month: String, now: Date, on database: PostgresPool) async throws -> (attached: Bool, detachable: Bool) {
        let row = try await database.query(
            """
            SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'usage_events'::regclass AND inhrelid = to_regclass($1)),
                   (to_date($2, 'YYYY-MM') + interval '1 month' + make_interval(days => $3)) < $4
            """, [table(of: month), month, dedupWindowDays, now])[0]
        return (row.text(0) == "t", row.text(1) == "t")
    }

    /// Detaches `month`'s partition; it stays as a table. Check `state(of:)` first:
    /// identifiers cannot be parameters, so only a month found attached may come here.
    public static func detach(_ month: String, on database: PostgresPool) async throws {
        try await database.query("ALTER TABLE usage_events DETACH PARTITION \(table(of: month)) CONCURRENTLY")
    }

    /// The partition's table name of `month` (`YYYY-MM`).
    public static func table(of month: String) -> String {
        "usage_events_" + month.replacingOccurrences(of: "-", with: "_")
    }
}
