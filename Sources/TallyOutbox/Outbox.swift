import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyStore

/// The transactional outbox (`outbox` table): a worker writes the message it must
/// send in the same transaction as the change it announces, and the relay publishes
/// it with confirms after the commit, so a crash between the two loses nothing.
public enum Outbox {
    /// Adds `event` for `billing.events` (routing key = its type) unless an event with
    /// its id is there already (the id is the dedup key: "once per period" is a unique
    /// constraint); returns 1 when new.
    @discardableResult
    public static func enqueue(_ event: BillingEvent, on connection: isolated PostgresConnection) throws -> Int {
        try enqueue([event], on: connection)
    }

    /// Adds `events` for `billing.events` in one statement, each unless its message id is
    /// there already; returns how many were new.
    @discardableResult
    public static func enqueue(_ events: [BillingEvent], on connection: isolated PostgresConnection) throws -> Int {
        try OutboxRecords.add(
            exchange: ExchangeName.billingEvents, routingKeys: events.map(\.type), messageIDs: events.map(\.id),
            bodies: try events.map { String(decoding: try $0.encoded(), as: UTF8.self) }, on: connection)
    }

    /// Adds `commands` for `tally.commands` in one statement, each unless its message id
    /// is there already; returns how many were new.
    @discardableResult
    public static func enqueue(_ commands: [InvoiceGenerateCommand], on connection: isolated PostgresConnection) throws -> Int {
        try OutboxRecords.add(
            exchange: ExchangeName.commands, routingKeys: commands.map { _ in RoutingKey.invoiceGenerate },
            messageIDs: commands.map(\.messageID), bodies: try commands.map { String(decoding: try $0.encoded(), as: UTF8.self) },
            on: connection)
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
            let rows = try await OutboxRecords.claim(limit: 100, leaseSeconds: 30, on: connection)
            guard !rows.isEmpty else { return sent }
            let messages = rows.map { row in
                OutgoingMessage(
                    exchange: row.exchange, routingKey: row.routingKey, body: Array(row.body.utf8),
                    properties: AMQPProperties(
                        contentType: "application/json", messageID: row.messageID, persistent: true,
                        timestamp: Int64(Date().timeIntervalSince1970)),
                    mandatory: true)
            }
            try await publisher.publish(messages)
            try await OutboxRecords.markPublished(rows.map(\.id), on: connection)
            sent += rows.count
            for row in rows {
                logger.debug(
                    "outbox message published", metadata: ["amqp.routing_key": "\(row.routingKey)", "amqp.message_id": "\(row.messageID ?? "")"])
            }
        }
    }
}
