import Foundation
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import TallyMessaging

/// What the Aggregator tells others after a commit: the outbox's billing events on
/// `billing.events` (confirmed, then marked published) and the tenants' quota
/// states on the `quota.state` fanout (a broadcast of the newest state; the next
/// commit sends it again, so a lost one only delays a refresh).
struct BillingEventRelay: Sendable {
    let publisher: ConfirmedPublisher
    let logger: Logger

    /// Runs after each commit; failures are logged, never thrown (the usage is committed).
    func afterCommit(_ outcome: LedgerOutcome, _ connection: PostgresConnection) async {
        do {
            try await broadcast(outcome.quotaStates)
            if outcome.billingEvents > 0 { _ = try await drain(connection) }
        } catch {
            logger.warning("billing events not sent yet; the outbox keeps them", metadata: ["error": "\(error)"])
        }
    }

    func broadcast(_ states: [QuotaState]) async throws {
        let messages = try states.map { state in
            OutgoingMessage(
                exchange: ExchangeName.quotaState, routingKey: "", body: try state.encoded(),
                properties: AMQPProperties(
                    contentType: "application/json", persistent: false, headers: [HeaderName.schema: .string(QuotaState.schema)]))
        }
        try await publisher.publish(messages)
    }

    /// Publishes every unpublished outbox row (leased for 30 s while in flight, so
    /// relays never send a row at the same time); returns how many were sent.
    func drain(_ connection: PostgresConnection) async throws -> Int {
        var sent = 0
        while true {
            let rows = try await connection.query(
                """
                UPDATE billing_event_outbox SET claimed_until = now() + interval '30 seconds'
                 WHERE id IN (SELECT id FROM billing_event_outbox
                               WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
                               ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
                RETURNING id, dedup_key, routing_key, body
                """)
            guard !rows.isEmpty else { return sent }
            let messages = rows.map { row in
                OutgoingMessage(
                    exchange: ExchangeName.billingEvents, routingKey: row.text(2) ?? "", body: Array((row.text(3) ?? "").utf8),
                    properties: AMQPProperties(
                        contentType: "application/json", messageID: row.text(1), persistent: true,
                        timestamp: Int64(Date().timeIntervalSince1970), headers: [HeaderName.schema: .string("billing_event.v1")]),
                    mandatory: true)
            }
            try await publisher.publish(messages)
            let ids = "{" + rows.compactMap { $0.text(0) }.joined(separator: ",") + "}"
            try await connection.query("UPDATE billing_event_outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [ids])
            sent += rows.count
            for row in rows {
                logger.info("billing event published", metadata: ["event.type": "\(row.text(2) ?? "")", "event.id": "\(row.text(1) ?? "")"])
            }
        }
    }
}
