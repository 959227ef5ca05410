import Foundation
import PostgresClient

/// The `notifications` table: one row per planned notification (its dedup key), so a
/// redelivered or replayed event never notifies the same recipient twice once it went
/// out, and people can see every attempt's outcome.
///
/// A delivery is *claimed* before it is attempted (a lease of `leaseSeconds`, so two
/// consumers never send it at once) and marked `sent` after the server accepted it. A
/// crash between the two leaves the claim to expire: the delivery is attempted again —
/// at least once, never zero times (SPEC §5).
///
/// The Notifier's sessions commit without waiting for the WAL flush (`synchronous_commit
/// = off`, see `NotificationHandler`): a database crash can lose the last fraction of a
/// second of these writes, which only means an already sent notification is sent again —
/// the same window a crash between the `250` and the mark already has — and it spares two
/// disk flushes per notification.
public enum NotificationRecords {
    public static let leaseSeconds = 120

    /// What the claim found.
    public enum Claim: Sendable, Equatable {
        /// Claimed: attempt it now.
        case claimed
        /// Already sent: nothing to do.
        case alreadySent
        /// Another consumer holds it right now (a redelivery raced it): try again later.
        case busy
    }

    /// One planned delivery, as the claim records it.
    public struct Planned: Sendable {
        public let dedupKey: String
        /// `email` or `webhook`.
        public let channel: String
        public let recipient: String
        public let endpointID: UUID?

        public init(dedupKey: String, channel: String, recipient: String, endpointID: UUID?) {
            self.dedupKey = dedupKey
            self.channel = channel
            self.recipient = recipient
            self.endpointID = endpointID
        }
    }

    /// Claims the delivery `notification.dedupKey` for one attempt.
    public static func claim(
        _ notification: Planned, eventID: String, eventType: String, tenant: UUID, on connection: PostgresConnection
    ) async throws -> Claim {
        let claimed = try await connection.query(
            """
            INSERT INTO notifications (dedup_key, channel, tenant_id, recipient, event_type, event_id, endpoint_id, attempts,
                                       claimed_until)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 1, now() + make_interval(secs => $8))
            ON CONFLICT (dedup_key) DO UPDATE
               SET attempts = notifications.attempts + 1, claimed_until = excluded.claimed_until, updated_at = now()
             WHERE notifications.status <> 'sent' AND (notifications.claimed_until IS NULL OR notifications.claimed_until < now())
            RETURNING id
            """,
            [
                notification.dedupKey, notification.channel, tenant, notification.recipient, eventType, eventID,
                notification.endpointID, leaseSeconds,
            ])
        guard claimed.isEmpty else { return .claimed }
        let status = try await connection.query("SELECT status FROM notifications WHERE dedup_key = $1", [notification.dedupKey])
        return status.first?.text(0) == "sent" ? .alreadySent : .busy
    }

    /// The server accepted it (`responseCode`: the webhook's HTTP status, or SMTP's 250).
    public static func markSent(_ dedupKey: String, responseCode: Int?, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE notifications SET status = 'sent', sent_at = now(), claimed_until = NULL, last_error = NULL,
                   response_code = $2, updated_at = now()
             WHERE dedup_key = $1
            """, [dedupKey, responseCode])
    }

    /// The attempt failed; the claim is released so the next attempt may take it.
    public static func markFailed(_ dedupKey: String, error: String, responseCode: Int?, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE notifications SET status = 'failed', claimed_until = NULL, last_error = $2, response_code = $3, updated_at = now()
             WHERE dedup_key = $1 AND status <> 'sent'
            """, [dedupKey, String(error.prefix(2000)), responseCode])
    }

    /// One delivery of an event, as `notifier dlq show` and `notifier resend` print it.
    public struct Delivery: Sendable {
        public let channel: String
        public let recipient: String
        public let status: String
        public let attempts: Int
        public let responseCode: Int?
        public let lastError: String?
        public let endpointID: UUID?

        /// Who it is for, as an operator's command prints it: a webhook by its endpoint's id,
        /// never its URL (which can carry the receiver's token); an email by its address.
        public var shownRecipient: String {
            endpointID.map { "endpoint \($0.uuidString.lowercased())" } ?? recipient
        }
    }

    /// Every delivery planned for event `eventID`, in the order they were planned.
    public static func deliveries(ofEvent eventID: String, on pool: PostgresPool) async throws -> [Delivery] {
        try await pool.query(
            """
            SELECT channel, recipient, status, attempts, response_code, last_error, endpoint_id FROM notifications
             WHERE event_id = $1 ORDER BY id
            """, [eventID]
        ).map { row in
            Delivery(
                channel: try row.decode(0), recipient: try row.decode(1), status: try row.decode(2), attempts: try row.decode(3),
                responseCode: try row.decode(4, as: Int?.self), lastError: try row.decode(5, as: String?.self),
                endpointID: try row.decode(6, as: UUID?.self))
        }
    }

    /// How often each notification of event `eventID` was tried, by dedup key (absent:
    /// never): the Notifier tries the least-tried webhooks first, so endpoints that keep
    /// timing out cannot starve the others of an event's time; and which were sent.
    public static func attempts(ofEvent eventID: String, on connection: PostgresConnection) async throws -> (tries: [String: Int], sent: Set<String>)
    {
        var attempts: [String: Int] = [:]
        var sent: Set<String> = []
        for row in try await connection.query("SELECT dedup_key, attempts, status = 'sent' FROM notifications WHERE event_id = $1", [eventID]) {
            let key = try row.decode(0, as: String.self)
            attempts[key] = try row.decode(1, as: Int.self)
            if row.text(2) == "t" { sent.insert(key) }
        }
        return (attempts, sent)
    }

    /// The deliveries of event `eventID` not sent yet, counted by channel.
    public static func unsentByChannel(ofEvent eventID: String, on connection: PostgresConnection) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try await connection.query(
            "SELECT channel, count(*) FROM notifications WHERE event_id = $1 AND status <> 'sent' GROUP BY channel", [eventID])
        {
            counts[row.text(0) ?? ""] = try row.decode(1, as: Int.self)
        }
        return counts
    }
}
