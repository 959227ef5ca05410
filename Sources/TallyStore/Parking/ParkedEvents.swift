import Foundation
import PostgresClient

/// An event a worker refused, kept with its reason in `parked_events` (never dropped).
public struct ParkedEvent: Sendable, Equatable {
    public let tenantID: String?
    public let eventID: String?
    public let code: String
    public let field: String
    public let reason: String
    /// The event as it arrived (JSON), so it can be fixed and replayed.
    public let payload: String
    public let messageID: String?
    /// When the event was accepted (its message's timestamp; for an event parked by the
    /// database, the earliest of its batch): a replay is stamped with it, so a replay and
    /// any park after it keep the acceptance the 90-day limit counts from.
    public let acceptedAt: Date?

    public init(
        tenantID: String?, eventID: String?, code: String, field: String, reason: String, payload: String, messageID: String?,
        acceptedAt: Date?
    ) {
        self.tenantID = tenantID
        self.eventID = eventID
        self.code = code
        self.field = field
        self.reason = reason
        self.payload = payload
        self.messageID = messageID
        self.acceptedAt = acceptedAt
    }
}

/// The `parked_events` table: usage events refused with their reason, written by the
/// Aggregator in the transaction of the batch that held them, and listed, replayed or
/// purged by `aggregator dlq`. Open means not replayed yet.
public enum ParkedEvents {
    /// Stores `events` inside the caller's transaction (one COPY).
    public static func store(_ events: [ParkedEvent], on connection: isolated PostgresConnection) throws {
        guard !events.isEmpty else { return }
        var writer = CopyTextWriter()
        for event in events {
            writer.field(event.tenantID)
            writer.field(event.eventID)
            writer.field(event.code)
            writer.field(event.field)
            writer.field(event.reason)
            writer.field(event.payload)
            writer.field(event.messageID)
            writer.field(
                event.acceptedAt.map {
                    PostgresTimestamp(microsecondsSinceEpoch: Int64(($0.timeIntervalSince1970 * 1_000_000).rounded(.down))).description
                })
            writer.endRow()
        }
        _ = try connection.copyIn(
            "COPY parked_events (tenant_id, event_id, code, field, reason, payload, message_id, accepted_at) FROM STDIN", text: writer.buffer)
    }

    /// How many parked events are open.
    public static func openCount(on database: PostgresPool) async throws -> Int {
        try await database.query("SELECT count(*) FROM parked_events WHERE replayed_at IS NULL")[0].decode(0, as: Int.self)
    }

    /// One open parked event, as `dlq list` shows it (times in UTC, absent values as "-").
    public struct Listed: Sendable {
        public let id: String
        public let parkedAt: String
        public let tenantID: String
        public let eventID: String
        public let code: String
        public let reason: String
    }

    /// The `limit` newest open parked events, newest first.
    public static func newestOpen(limit: Int, on database: PostgresPool) async throws -> [Listed] {
        try await database.query(
            """
            SELECT id, to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), coalesce(tenant_id, '-'),
                   coalesce(event_id, '-'), coalesce(code, '-'), reason
              FROM parked_events WHERE replayed_at IS NULL ORDER BY id DESC LIMIT $1
            """, [limit]
        ).map { row in
            Listed(
                id: row.text(0) ?? "", parkedAt: row.text(1) ?? "", tenantID: row.text(2) ?? "", eventID: row.text(3) ?? "",
                code: row.text(4) ?? "", reason: row.text(5) ?? "")
        }
    }

    /// Every column of parked event `id`, by name, as text; nil when there is none.
    public static func columns(of id: Int64, on database: PostgresPool) async throws -> [(name: String, value: String?)]? {
        let rows = try await database.query(
            """
            SELECT id, parked_at, tenant_id, event_id, code, field, reason, message_id, replayed_at, payload
              FROM parked_events WHERE id = $1
            """, [id])
        guard let row = rows.first else { return nil }
        return row.columns.enumerated().map { (name: $1, value: row.text($0)) }
    }

    /// Up to `limit` open parked events after `after` in id order, among `ids` (all open
    /// ones when `ids` is empty): their ids, payloads as they arrived, and when they were
    /// accepted (parked, for one parked before that was kept). Read page by page, so a
    /// replay of a million parked events holds one page, not the million.
    public static func openPayloads(
        ids: [Int64], after: Int64, limit: Int, on database: PostgresPool
    ) async throws -> [(id: Int64, payload: String?, acceptedAt: Date)] {
        try await database.query(
            """
            SELECT id, payload, coalesce(accepted_at, parked_at) FROM parked_events
             WHERE replayed_at IS NULL AND id > $2 AND (cardinality($1::bigint[]) = 0 OR id = ANY($1::bigint[]))
               AND code IS DISTINCT FROM '\(notJSON)'
             ORDER BY id LIMIT $3
            """, [PostgresTextArray(ids.map(String.init)), after, limit]
        ).map { (id: try $0.decode(0, as: Int64.self), payload: $0.text(1), acceptedAt: try $0.decode(2, as: Date.self)) }
    }

    /// The code of an event that was not JSON inside (`invalid_json`): no fix makes it
    /// countable, and its kept text has any byte that was not UTF-8 replaced, so a replay
    /// would count an altered event. Replays leave it; `purge` drops it.
    public static let notJSON = "invalid_json"

    /// Of `ids`, the open parked events that are not JSON inside (never replayed).
    public static func notReplayable(_ ids: [Int64], on database: PostgresPool) async throws -> [Int64] {
        try await database.query(
            "SELECT id FROM parked_events WHERE id = ANY($1::bigint[]) AND replayed_at IS NULL AND code = $2 ORDER BY id",
            [PostgresTextArray(ids.map(String.init)), notJSON]
        ).map { try $0.decode(0, as: Int64.self) }
    }

    /// Of `ids`, those that are not open parked events: never parked (a mistyped id), or
    /// replayed already (with when).
    public static func notOpen(_ ids: [Int64], on database: PostgresPool) async throws -> [(id: Int64, replayedAt: String?)] {
        try await database.query(
            """
            SELECT wanted.id, to_char(p.replayed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
              FROM unnest($1::bigint[]) AS wanted (id)
              LEFT JOIN parked_events p ON p.id = wanted.id
             WHERE p.id IS NULL OR p.replayed_at IS NOT NULL
             ORDER BY wanted.id
            """, [PostgresTextArray(ids.map(String.init))]
        ).map { (id: try $0.decode(0, as: Int64.self), replayedAt: $0.text(1)) }
    }

    /// Marks `ids` replayed (their events were published again and confirmed).
    public static func markReplayed(_ ids: [Int64], on database: PostgresPool) async throws {
        try await database.query(
            "UPDATE parked_events SET replayed_at = now() WHERE id = ANY($1::bigint[])", [PostgresTextArray(ids.map(String.init))])
    }

    /// Deletes every open parked event for good; returns how many.
    public static func purgeOpen(on database: PostgresPool) async throws -> Int {
        try await database.query("DELETE FROM parked_events WHERE replayed_at IS NULL").affectedRows
    }
}
