import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging

/// The transactional outbox (`outbox` table): a worker writes the message it must
/// send in the same transaction as the change it announces, and the relay publishes
/// it with confirms after the commit, so a crash between the two loses nothing.
public enum Outbox {
    /// Adds `event` for `billing.events` (routing key = its type) unless an event with
    /// its id is there already (the id is the dedup key: "once per period" is a unique
    /// constraint); returns 1 when new.
    @discardableResult
    public static func enqueue(_ event: BillingEvent, on connection: isolated PostgresConnection) throws -> Int {
        try enqueue(
            exchange: ExchangeName.billingEvents, routingKey: event.type, messageID: event.id,
            body: String(decoding: try event.encoded(), as: UTF8.self), on: connection)
    }

    /// Adds `events` for `billing.events` in one statement, each unless its message id is
    /// there already; returns how many were new.
    @discardableResult
    public static func enqueue(_ events: [BillingEvent], on connection: isolated PostgresConnection) throws -> Int {
        guard !events.isEmpty else { return 0 }
        let bodies = try events.map { String(decoding: try $0.encoded(), as: UTF8.self) }
        return try connection.query(
            """
            INSERT INTO outbox (exchange, routing_key, message_id, body)
            SELECT $1, r, m, b::jsonb FROM unnest($2::text[], $3::text[], $4::text[]) AS u (r, m, b)
            ON CONFLICT (message_id) DO NOTHING
            """,
            [
                ExchangeName.billingEvents, PostgresTextArray(events.map(\.type)), PostgresTextArray(events.map(\.id)),
                PostgresTextArray(bodies),
            ]
        ).affectedRows
    }

    /// Adds `commands` for `tally.commands` in one statement, each unless its message id
    /// is there already; returns how many were new.
    @discardableResult
    public static func enqueue(_ commands: [InvoiceGenerateCommand], on connection: isolated PostgresConnection) throws -> Int {
        guard !commands.isEmpty else { return 0 }
        let bodies = try commands.map { String(decoding: try $0.encoded(), as: UTF8.self) }
        return try connection.query(
            """
            INSERT INTO outbox (exchange, routing_key, message_id, body)
            SELECT $1, $2, m, b::jsonb FROM unnest($3::text[], $4::text[]) AS u (m, b)
            ON CONFLICT (message_id) DO NOTHING
            """,
            [
                ExchangeName.commands, RoutingKey.invoiceGenerate, PostgresTextArray(commands.map(\.messageID)),
                PostgresTextArray(bodies),
            ]
        ).affectedRows
    }

    private static func enqueue(
        exchange: String, routingKey: String, messageID: String, body: String, on connection: isolated PostgresConnection
    ) throws -> Int {
        try connection.query(
            """
            INSERT INTO outbox (exchange, routing_key, message_id, body) VALUES ($1, $2, $3, $4::jsonb)
            ON CONFLICT (message_id) DO NOTHING
            """, [exchange, routingKey, messageID, body]
        ).affectedRows
    }
}

/// Publishes unsent outbox rows: each claimed for 30 s (so relays in several processes
/// never send a row at the same time), published mandatory with confirms, then marked
/// sent. A relay that dies between the confirm and the mark makes the row go out twice
/// with the same message id, which consumers deduplicate.
public struct OutboxRelay: Sendable {
    let publisher: ConfirmedPublisher
    let logger: Logger

    public init(publisher: ConfirmedPublisher, logger: Logger) {
        self.publisher = publisher
        self.logger = logger
    }

    /// Sends everything unsent; returns how many rows went out.
    public func drain(_ connection: PostgresConnection) async throws -> Int {
        var sent = 0
        while true {
            let rows = try await connection.query(
                """
                UPDATE outbox SET claimed_until = now() + interval '30 seconds'
                 WHERE id IN (SELECT id FROM outbox
                               WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
                               ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
                RETURNING id, exchange, routing_key, message_id, body::text
                """)
            guard !rows.isEmpty else { return sent }
            let messages = rows.map { row in
                OutgoingMessage(
                    exchange: row.text(1) ?? "", routingKey: row.text(2) ?? "", body: Array((row.text(4) ?? "").utf8),
                    properties: AMQPProperties(
                        contentType: "application/json", messageID: row.text(3), persistent: true,
                        timestamp: Int64(Date().timeIntervalSince1970)),
                    mandatory: true)
            }
            try await publisher.publish(messages)
            let ids = PostgresTextArray(rows.compactMap { $0.text(0) })
            try await connection.query("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [ids])
            sent += rows.count
            for row in rows {
                logger.debug(
                    "outbox message published", metadata: ["amqp.routing_key": "\(row.text(2) ?? "")", "amqp.message_id": "\(row.text(3) ?? "")"])
            }
        }
    }
}
