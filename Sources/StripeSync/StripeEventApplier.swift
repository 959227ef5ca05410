import CivilTime
import Foundation
import PostgresClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// Applies the Stripe events the billing API verified and stored, oldest first, each
/// once (rows are claimed with SKIP LOCKED and marked processed in the same transaction):
/// - `invoice.paid`, `invoice.payment_succeeded` → our invoice becomes `paid`;
/// - `invoice.payment_failed` → `invoice.payment_failed` on `billing.events` (outbox);
/// - `customer.subscription.deleted` → our subscription ends then (if it had not).
/// Our invoice is found by its Stripe id or by `metadata.tally_invoice_id`.
public enum StripeEventApplier {
    /// Applies up to 100 pending events; returns how many. Each runs in its own
    /// savepoint: one that fails (a payload we cannot read, a constraint) is marked
    /// `failed_at` with the reason (any error: SQL, a payload we cannot read) and the
    /// others are applied. A lost connection still fails the whole sweep (it is retried).
    public static func applyPending(now: Date = TallyClock.now(), on connection: isolated PostgresConnection) throws -> Int {
        let events = try connection.query(
            """
            SELECT event_id, type FROM stripe_webhook_events WHERE processed_at IS NULL AND failed_at IS NULL
             ORDER BY received_at LIMIT 100 FOR UPDATE SKIP LOCKED
            """)
        for event in events {
            let id = event.text(0) ?? ""
            try connection.executeScript("SAVEPOINT stripe_event")
            do {
                try apply(id, type: event.text(1) ?? "", now: now, on: connection)
                try connection.query("UPDATE stripe_webhook_events SET processed_at = now() WHERE event_id = $1", [id])
                try connection.executeScript("RELEASE SAVEPOINT stripe_event")
            } catch {
                if let error = error as? PostgresError, error.isConnectionError { throw error }
                try connection.executeScript("ROLLBACK TO SAVEPOINT stripe_event; RELEASE SAVEPOINT stripe_event")
                let reason = (error as? PostgresError).map { "\($0.message)\($0.detail.map { " (\($0))" } ?? "")" } ?? "\(error)"
                try connection.query(
                    "UPDATE stripe_webhook_events SET failed_at = now(), error = $2 WHERE event_id = $1", [id, reason])
            }
        }
        return events.count
    }

    /// Applies one stored event.
    private static func apply(_ id: String, type: String, now: Date, on connection: isolated PostgresConnection) throws {
        switch type {
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
            if let failure = try paymentFailure(event: id, on: connection) {
                try Outbox.enqueue(.invoicePaymentFailed(failure), on: connection)
            }
        case "customer.subscription.deleted", "customer.subscription.updated":
            try applySubscriptionEvent(id, now: now, on: connection)
        case "payment_method.attached", "payment_method.updated", "payment_method.automatically_updated":
            if let card = try connection.query(
                """
                SELECT t.id, o ->> 'id', o #>> '{card,brand}', o #>> '{card,last4}', o #>> '{card,exp_month}', o #>> '{card,exp_year}'
                  FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
                  JOIN tenants t ON t.stripe_customer_id = o ->> 'customer'
                 WHERE e.event_id = $1 AND o ->> 'type' = 'card'
                """, [id]
            ).first, let providerID = card.text(1) {
                try PaymentMethodRecords.upsertStripeCard(
                    tenant: try card.decode(0), providerID: providerID, brand: card.text(2), last4: card.text(3),
                    expMonth: card.text(4).flatMap { Int($0) }, expYear: card.text(5).flatMap { Int($0) }, on: connection)
            }
        case "payment_method.detached":
            try connection.query(
                """
                DELETE FROM payment_methods USING stripe_webhook_events e
                 WHERE e.event_id = $1 AND payment_methods.provider = 'stripe'
                   AND payment_methods.provider_id = e.payload #>> '{data,object,id}'
                """, [id])
        default:
            break  // recorded, nothing of ours to change
        }
    }

    /// Our invoice Stripe failed to collect, with what Stripe said about it: the amount
    /// due, how many attempts, when it tries next, and its reason when the event has one.
    private static func paymentFailure(
        event id: String, on connection: isolated PostgresConnection
    ) throws -> BillingEvent.InvoicePaymentFailed? {
        guard
            let row = try connection.query(
                """
                SELECT i.id, i.number, i.tenant_id, i.currency, coalesce((o ->> 'amount_due')::bigint, i.total_cents),
                       (o ->> 'attempt_count')::int, to_timestamp((o ->> 'next_payment_attempt')::bigint),
                       coalesce(o #>> '{last_payment_error,message}', o #>> '{payment_intent,last_payment_error,message}',
                                o #>> '{charge,failure_message}'),
                       e.received_at
                  FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
                  JOIN invoices i ON i.stripe_invoice_id = o ->> 'id' OR i.id::text = o #>> '{metadata,tally_invoice_id}'
                 WHERE e.event_id = $1
                """, [id]
            ).first
        else { return nil }
        return BillingEvent.InvoicePaymentFailed(
            tenantID: try row.decode(2), occurredAt: try row.decode(8), invoiceID: try row.decode(0), number: try row.decode(1),
            currency: try row.decode(3), amountDueCents: try row.decode(4), attemptCount: try row.decode(5, as: Int?.self),
            nextAttemptAt: try row.decode(6, as: Date?.self), failureMessage: row.text(7), stripeEventID: id)
    }

    /// Stripe ended the subscription (deleted, or updated to a final status) or scheduled
    /// its end (`cancel_at_period_end`): ours ends likewise — now, or at the end of our
    /// period containing now — never inside a period already invoiced (those stand; the
    /// end moves to the last invoiced period's end).
    private static func applySubscriptionEvent(_ eventID: String, now: Date, on connection: isolated PostgresConnection) throws {
        guard
            let row = try connection.query(
                """
                SELECT s.id, e.type, e.payload #>> '{data,object,status}', coalesce((e.payload #>> '{data,object,cancel_at_period_end}')::boolean, false),
                       (SELECT max(period_end) FROM invoices i WHERE i.subscription_id = s.id AND i.kind = 'period'), s.ends_at IS NOT NULL
                  FROM stripe_webhook_events e JOIN subscriptions s ON s.stripe_subscription_id = e.payload #>> '{data,object,id}'
                 WHERE e.event_id = $1
                """, [eventID]
            ).first, try !row.decode(5, as: Bool.self)
        else { return }
        let subscription = try row.decode(0, as: UUID.self)
        let ended = row.text(1) == "customer.subscription.deleted" || ["canceled", "incomplete_expired"].contains(row.text(2) ?? "")
        let atPeriodEnd = try row.decode(3, as: Bool.self)
        guard ended || atPeriodEnd else { return }
        let lastInvoiced = row.text(4) == nil ? nil : try row.decode(4, as: Date.self)
        let at = max(now, lastInvoiced ?? now)
        do {
            try SubscriptionStore.cancel(
                subscription, at: at, atPeriodEnd: !ended, plans: try SubscriptionRecords.plans(on: connection), on: connection)
        } catch is SubscriptionRefusal {
            // Already ended, or before its start: nothing of ours to change.
        }
    }
}
