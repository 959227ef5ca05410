import Foundation
import PostgresClient
import TallyMessaging
import TallyRuntime

/// Applies the Stripe events the billing API verified and stored, oldest first, each
/// once (rows are claimed with SKIP LOCKED and marked processed in the same transaction):
/// - `invoice.paid`, `invoice.payment_succeeded` → our invoice becomes `paid`;
/// - `invoice.payment_failed` → `invoice.payment_failed` on `billing.events` (outbox);
/// - `customer.subscription.deleted` → our subscription ends then (if it had not).
/// Our invoice is found by its Stripe id or by `metadata.tally_invoice_id`.
public enum StripeEventApplier {
    /// Applies up to 100 pending events; returns how many.
    public static func applyPending(on connection: isolated PostgresConnection) throws -> Int {
        let events = try connection.query(
            """
            SELECT event_id, type FROM stripe_webhook_events WHERE processed_at IS NULL
             ORDER BY received_at LIMIT 100 FOR UPDATE SKIP LOCKED
            """)
        for event in events {
            let id = event.text(0) ?? ""
            switch event.text(1) ?? "" {
            case "invoice.paid", "invoice.payment_succeeded":
                try connection.query(
                    """
                    UPDATE invoices SET status = 'paid', paid_at = now()
                      FROM stripe_webhook_events e
                     WHERE e.event_id = $1 AND invoices.status = 'open'
                       AND (invoices.stripe_invoice_id = e.payload #>> '{data,object,id}'
                            OR invoices.id::text = e.payload #>> '{data,object,metadata,tally_invoice_id}')
                    """, [id])
            case "invoice.payment_failed":
                if let row = try connection.query(
                    """
                    SELECT i.id, i.number, i.tenant_id FROM invoices i, stripe_webhook_events e
                     WHERE e.event_id = $1 AND (i.stripe_invoice_id = e.payload #>> '{data,object,id}'
                           OR i.id::text = e.payload #>> '{data,object,metadata,tally_invoice_id}')
                    """, [id]).first {
                    try Outbox.enqueue(
                        exchange: ExchangeName.billingEvents, routingKey: "invoice.payment_failed", messageID: "invoice.payment_failed:\(id)",
                        body: #"{"type": "invoice.payment_failed", "invoice_id": "\#(row.text(0) ?? "")", "number": "\#(row.text(1) ?? "")", "tenant_id": "\#(row.text(2) ?? "")", "stripe_event_id": "\#(id)"}"#,
                        on: connection)
                }
            case "customer.subscription.deleted":
                try connection.query(
                    """
                    UPDATE subscriptions SET ends_at = coalesce(ends_at, now()), cancel_requested_at = coalesce(cancel_requested_at, now())
                      FROM stripe_webhook_events e
                     WHERE e.event_id = $1 AND subscriptions.stripe_subscription_id = e.payload #>> '{data,object,id}'
                    """, [id])
            default:
                break  // recorded, nothing of ours to change
            }
            try connection.query("UPDATE stripe_webhook_events SET processed_at = now() WHERE event_id = $1", [id])
        }
        return events.count
    }
}
