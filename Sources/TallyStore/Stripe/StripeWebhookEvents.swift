import Foundation
import PostgresClient

/// Stripe's verified webhook events in `stripe_webhook_events`: the queue the billing API
/// fills and the Invoicer applies, oldest first, each once; and the changes an event makes
/// to our rows (invoices paid, cards removed), each read straight from the stored payload.
public enum StripeWebhookEvents {
    /// A stored event waiting to be applied.
    public struct Pending: Sendable, Equatable {
        public let id: String
        public let type: String
    }

    /// An event set aside because applying it failed, as `invoicer stripe list` prints it.
    public struct Failed: Sendable, Equatable {
        public let id: String
        public let type: String
        /// When it failed, RFC 3339 in UTC.
        public let failedAt: String
        public let error: String
    }

    /// A card a `payment_method.*` event describes, with the tenant whose Stripe customer holds it.
    public struct Card: Sendable, Equatable {
        public let tenant: UUID
        public let providerID: String
        public let brand: String?
        public let last4: String?
        public let expMonth: Int?
        public let expYear: Int?
    }

    /// Our invoice an `invoice.payment_failed` event is about, with what Stripe said of it.
    public struct PaymentFailure: Sendable, Equatable {
        public let invoiceID: UUID
        public let number: String
        public let tenantID: UUID
        public let currency: String
        /// Our invoice's total, in our minor units: Stripe's `amount_due` is in Stripe's
        /// unit (an ISK invoice showed 100 times its amount) and may be in another currency.
        public let amountDueCents: Int64
        public let attemptCount: Int?
        public let nextAttemptAt: Date?
        public let failureMessage: String?
        /// When the event was received.
        public let receivedAt: Date
    }

    /// Our subscription a `customer.subscription.*` event is about.
    public struct SubscriptionChange: Sendable, Equatable {
        public let subscription: UUID
        /// Ours has an end already (canceled, or set to end at a period end).
        public let hasEnd: Bool
        /// When Stripe says the subscription ended (`ended_at`, else `canceled_at`), if it says.
        public let endedAt: Date?
        /// The event's type.
        public let type: String?
        /// Stripe's status of the subscription.
        public let status: String?
        public let cancelAtPeriodEnd: Bool
        /// When Stripe was set to end it (`cancel_at`: a scheduled end's period end), else the
        /// end of Stripe's current period (`current_period_end`, on the subscription or, from
        /// API version 2025-03-31, on its first item), if the event says.
        public let scheduledEnd: Date?
        /// The end of the subscription's last invoiced period, if any.
        public let lastInvoicedPeriodEnd: Date?
    }

    /// Stores a verified event (its payload as received) unless its id was stored before;
    /// returns whether it was new. One statement on any pooled connection.
    public static func record(id: String, type: String, payload: String, on pool: PostgresPool) async throws -> Bool {
        let stored = try await pool.query(
            "INSERT INTO stripe_webhook_events (event_id, type, payload) VALUES ($1, $2, $3::jsonb) ON CONFLICT (event_id) DO NOTHING",
            [id, type, payload]
        ).affectedRows
        return stored != 0
    }

    /// Claims the oldest event neither applied nor failed, locked for the
    /// caller's transaction (`FOR UPDATE SKIP LOCKED`: Invoicers share the queue).
    public static func claimNext(on connection: isolated PostgresConnection) throws -> Pending? {
        try connection.query(
            """
            SELECT event_id, type FROM stripe_webhook_events WHERE processed_at IS NULL AND failed_at IS NULL
             ORDER BY received_at LIMIT 1 FOR UPDATE SKIP LOCKED
            """
        ).first.map { Pending(id: $0.text(0) ?? "", type: $0.text(1) ?? "") }
    }

    /// Marks the event applied, in the caller's transaction.
    public static func markProcessed(_ id: String, on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE stripe_webhook_events SET processed_at = now() WHERE event_id = $1", [id])
    }

    /// Sets the event aside as failed with `reason`, in the caller's transaction.
    public static func markFailed(_ id: String, reason: String, on connection: isolated PostgresConnection) throws {
        try connection.query(
            "UPDATE stripe_webhook_events SET failed_at = now(), error = $2 WHERE event_id = $1", [id, reason])
    }

    /// `invoice.paid`: our open invoice the event names (by Stripe id or
    /// `metadata.tally_invoice_id`) becomes `paid`, in the caller's transaction.
    public static func markInvoicePaid(event id: String, on connection: isolated PostgresConnection) throws {
        guard let payment = try invoicePayment(event: id, on: connection) else { return }
        try markPaid(payment.invoiceID, on: connection)
    }

    /// Our open invoice an `invoice.paid` event is about, with what the event says was
    /// paid, for the caller to check before `markPaid`; nil when none of ours matches.
    public struct InvoicePayment: Sendable, Equatable {
        public let invoiceID: UUID
        public let number: String
        public let totalCents: Int64
        public let currency: String
        /// Stripe's `amount_paid`, `total` and `amount_remaining` (in Stripe's unit of the
        /// currency) and `currency`, when the event has them.
        public let amountPaid: Int64?
        public let stripeTotal: Int64?
        public let amountRemaining: Int64?
        /// The customer balance before and after the invoice (Stripe's sign: negative is
        /// credit), and the credit notes Stripe issued on it before payment, when the event has them.
        public let startingBalance: Int64?
        public let endingBalance: Int64?
        public let prePaymentCredited: Int64?
        /// Marked paid in Stripe outside it (`paid_out_of_band`).
        public let paidOutOfBand: Bool
        public let paidCurrency: String?
        /// The event names a customer other than the tenant's Stripe customer (never when
        /// the tenant has none recorded yet: a push that created it has not committed).
        public let otherCustomer: Bool
    }

    /// The match every `invoice.*` event uses: our invoice pushed as that Stripe invoice,
    /// or, for one not pushed yet (no Stripe id of ours), the invoice its
    /// `metadata.tally_invoice_id` names. (Any Stripe invoice carrying our id in its
    /// metadata marked ours paid, even one of another customer for another amount.)
    static let matchesEvent = """
        (invoices.stripe_invoice_id = o ->> 'id'
         OR (invoices.stripe_invoice_id IS NULL AND invoices.id::text = o #>> '{metadata,tally_invoice_id}'))
        """

    public static func invoicePayment(event id: String, on connection: isolated PostgresConnection) throws -> InvoicePayment? {
        guard
            let row = try connection.query(
                """
                SELECT invoices.id, invoices.number, invoices.total_cents, invoices.currency, (o ->> 'amount_paid')::bigint,
                       lower(o ->> 'currency'), coalesce(o ->> 'customer' <> t.stripe_customer_id, false),
                       (o ->> 'total')::bigint, (o ->> 'amount_remaining')::bigint, (o ->> 'starting_balance')::bigint,
                       (o ->> 'ending_balance')::bigint, (o ->> 'pre_payment_credit_notes_amount')::bigint,
                       coalesce(o ->> 'paid_out_of_band' = 'true', false)
                  FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
                  JOIN invoices ON \(matchesEvent)
                  JOIN tenants t ON t.id = invoices.tenant_id
                 WHERE e.event_id = $1 AND invoices.status = 'open'
                """, [id]
            ).first
        else { return nil }
        return InvoicePayment(
            invoiceID: try row.decode(0), number: try row.decode(1), totalCents: try row.decode(2), currency: try row.decode(3),
            amountPaid: try row.decode(4, as: Int64?.self), stripeTotal: try row.decode(7, as: Int64?.self),
            amountRemaining: try row.decode(8, as: Int64?.self), startingBalance: try row.decode(9, as: Int64?.self),
            endingBalance: try row.decode(10, as: Int64?.self), prePaymentCredited: try row.decode(11, as: Int64?.self),
            paidOutOfBand: try row.decode(12, as: Bool.self), paidCurrency: row.text(5),
            otherCustomer: try row.decode(6, as: Bool.self))
    }

    /// Our open invoice `invoice` becomes `paid`, in the caller's transaction.
    public static func markPaid(_ invoice: UUID, on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE invoices SET status = 'paid', paid_at = now() WHERE id = $1 AND status = 'open'", [invoice])
    }

    /// Any `invoice.*` event: Stripe's status of our invoice (`open`, `paid`, `void`, …) as
    /// the event gives it, shown beside ours; it stayed `draft`, as pushed, after Stripe
    /// reported the payment. A final status (`paid`, `void`) is not overwritten by an
    /// event delivered after it.
    public static func recordStripeInvoiceStatus(event id: String, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            UPDATE invoices SET stripe_invoice_status = o ->> 'status'
              FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
             WHERE e.event_id = $1 AND o ->> 'status' IS NOT NULL
               AND coalesce(invoices.stripe_invoice_status, '') NOT IN ('paid', 'void')
               AND \(matchesEvent)
            """, [id])
    }

    /// The card a `payment_method.*` event describes, when it is a card of a tenant's
    /// Stripe customer; nil otherwise.
    public static func card(event id: String, on connection: isolated PostgresConnection) throws -> Card? {
        guard
            let card = try connection.query(
                """
                SELECT t.id, o ->> 'id', o #>> '{card,brand}', o #>> '{card,last4}', o #>> '{card,exp_month}', o #>> '{card,exp_year}'
                  FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
                  JOIN tenants t ON t.stripe_customer_id = o ->> 'customer'
                 WHERE e.event_id = $1 AND o ->> 'type' = 'card'
                   -- Applied after its detachment (events are applied as received, by several
                   -- Invoicers): a detached card is gone for good in Stripe, so not added back.
                   AND NOT EXISTS (
                       SELECT 1 FROM stripe_webhook_events d
                        WHERE d.type = 'payment_method.detached' AND d.processed_at IS NOT NULL
                          AND d.payload #>> '{data,object,id}' = o ->> 'id')
                """, [id]
            ).first, let providerID = card.text(1)
        else { return nil }
        return Card(
            tenant: try card.decode(0), providerID: providerID, brand: card.text(2), last4: card.text(3),
            expMonth: card.text(4).flatMap { Int($0) }, expYear: card.text(5).flatMap { Int($0) })
    }

    /// `payment_method.detached`: deletes our record of the card, in the caller's transaction.
    public static func deleteDetachedCard(event id: String, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            DELETE FROM payment_methods USING stripe_webhook_events e
             WHERE e.event_id = $1 AND payment_methods.provider = 'stripe'
               AND payment_methods.provider_id = e.payload #>> '{data,object,id}'
            """, [id])
    }

    /// Our open invoice an `invoice.payment_failed` event names (`matchesEvent`), with our
    /// total as the amount due, attempts, next attempt and
    /// reason the event gives; nil when none of ours matches, or ours is paid already: a
    /// failure delivered late (Stripe does not order its events) must not tell the tenant
    /// to update a card for an invoice it paid.
    public static func paymentFailure(event id: String, on connection: isolated PostgresConnection) throws -> PaymentFailure? {
        guard
            let row = try connection.query(
                """
                SELECT invoices.id, invoices.number, invoices.tenant_id, invoices.currency, invoices.total_cents,
                       (o ->> 'attempt_count')::int, to_timestamp((o ->> 'next_payment_attempt')::bigint),
                       coalesce(o #>> '{last_payment_error,message}', o #>> '{payment_intent,last_payment_error,message}',
                                o #>> '{charge,failure_message}'),
                       e.received_at
                  FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
                  JOIN invoices ON \(matchesEvent)
                 WHERE e.event_id = $1 AND invoices.status = 'open'
                """, [id]
            ).first
        else { return nil }
        return PaymentFailure(
            invoiceID: try row.decode(0), number: try row.decode(1), tenantID: try row.decode(2), currency: try row.decode(3),
            amountDueCents: try row.decode(4), attemptCount: try row.decode(5, as: Int?.self), nextAttemptAt: try row.decode(6, as: Date?.self),
            failureMessage: row.text(7), receivedAt: try row.decode(8))
    }

    /// Our subscription a `customer.subscription.*` event names (by Stripe id), with
    /// Stripe's status, when Stripe says it ended, and the end of its last invoiced period;
    /// nil when none of ours matches.
    public static func subscriptionChange(event id: String, on connection: isolated PostgresConnection) throws -> SubscriptionChange? {
        guard
            let row = try connection.query(
                """
                SELECT s.id, e.type, o ->> 'status', coalesce((o ->> 'cancel_at_period_end')::boolean, false),
                       (SELECT max(period_end) FROM invoices i WHERE i.subscription_id = s.id AND i.kind = 'period'), s.ends_at IS NOT NULL,
                       to_timestamp(coalesce(o ->> 'ended_at', o ->> 'canceled_at')::bigint),
                       to_timestamp(coalesce(o ->> 'cancel_at', o ->> 'current_period_end', o #>> '{items,data,0,current_period_end}')::bigint)
                  FROM stripe_webhook_events e CROSS JOIN LATERAL (SELECT e.payload #> '{data,object}' AS o) x
                  JOIN subscriptions s ON s.stripe_subscription_id = o ->> 'id'
                 WHERE e.event_id = $1
                """, [id]
            ).first
        else { return nil }
        return SubscriptionChange(
            subscription: try row.decode(0, as: UUID.self), hasEnd: try row.decode(5, as: Bool.self), endedAt: try row.decode(6, as: Date?.self),
            type: row.text(1), status: row.text(2), cancelAtPeriodEnd: try row.decode(3, as: Bool.self),
            scheduledEnd: try row.decode(7, as: Date?.self), lastInvoicedPeriodEnd: try row.decode(4, as: Date?.self))
    }

    /// The events set aside as failed and not applied since, oldest first; one statement
    /// on any pooled connection.
    public static func failed(on pool: PostgresPool) async throws -> [Failed] {
        let events = try await pool.query(
            """
            SELECT event_id, type, to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), coalesce(error, '')
              FROM stripe_webhook_events WHERE failed_at IS NOT NULL AND processed_at IS NULL ORDER BY received_at
            """)
        return events.map { Failed(id: $0.text(0) ?? "", type: $0.text(1) ?? "", failedAt: $0.text(2) ?? "", error: $0.text(3) ?? "") }
    }

    /// Makes every failed, unapplied event pending again; returns how many. One statement
    /// on any pooled connection.
    public static func retryFailed(on pool: PostgresPool) async throws -> Int {
        try await pool.query(
            "UPDATE stripe_webhook_events SET failed_at = NULL WHERE failed_at IS NOT NULL AND processed_at IS NULL"
        ).affectedRows
    }
}
