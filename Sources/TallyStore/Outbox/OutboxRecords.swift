import Foundation
import PostgresClient

/// The `outbox` table: messages written in the transaction of the change they announce,
/// published after the commit by a relay (`OutboxRelay`). A message id is there once.
public enum OutboxRecords {
    /// Adds one message per element of `routingKeys`, `messageIDs` and `bodies` (JSON),
    /// all for `exchange`, in one statement, each unless its message id is there already;
    /// returns how many were new. Runs inside the caller's transaction.
    public static func add(
        exchange: String, routingKeys: [String], messageIDs: [String], bodies: [String], on connection: isolated PostgresConnection
    ) throws -> Int {
        precondition(routingKeys.count == messageIDs.count && messageIDs.count == bodies.count, "one routing key, id and body per message")
        guard !messageIDs.isEmpty else { return 0 }
        return try connection.query(
            """
            INSERT INTO outbox (exchange, routing_key, message_id, body)
            SELECT $1, r, m, b::jsonb FROM unnest($2::text[], $3::text[], $4::text[]) AS u (r, m, b)
            ON CONFLICT (message_id) DO NOTHING
            """, [exchange, PostgresTextArray(routingKeys), PostgresTextArray(messageIDs), PostgresTextArray(bodies)]
        ).affectedRows
    }

    /// An unsent message, claimed for sending.
    public struct Claimed: Sendable {
        public let id: Int64
        public let exchange: String
        public let routingKey: String
        public let messageID: String?
        public let body: String
    }

    /// Claims up to `limit` unsent messages, oldest first, for `leaseSeconds` (relays in
    /// several processes never send one at the same time; a claim that is not marked
    /// published in time expires, and the message is sent again).
    public static func claim(limit: Int, leaseSeconds: Int, on connection: isolated PostgresConnection) throws -> [Claimed] {
        try connection.query(
            """
            UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
             WHERE id IN (SELECT id FROM outbox
                           WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
                           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING id, exchange, routing_key, message_id, body::text
            """, [limit, leaseSeconds]
        ).map { row in
            Claimed(
                id: try row.decode(0, as: Int64.self), exchange: row.text(1) ?? "", routingKey: row.text(2) ?? "", messageID: row.text(3),
                body: row.text(4) ?? "")
        }
    }

    /// Marks `ids` published (the broker confirmed them).
    public static func markPublished(_ ids: [Int64], on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [PostgresTextArray(ids.map(String.init))])
    }
}
