import Foundation
import PostgresClient

/// Where each invoice's push to Stripe stands (the `stripe_*` columns of `invoices`) and the
/// Stripe ids Tally keeps for its tenants (customers) and subscriptions: the push's claims,
/// locks and outcomes, and the backlog operators list and retry.
public enum StripeSyncState {
    /// An invoice claimed for its push.
    public struct Claim: Sendable, Equatable {
        public let invoice: UUID
        public let tenant: UUID
        /// Failed pushes of it so far.
        public let attempts: Int
    }

    /// Invoice and tenant fields a push needs.
    public struct PushSource: Sendable {
        public let invoiceID: UUID
        public let number: String
        public let currency: String
        public let totalCents: Int64
        public let taxCents: Int64
        public let taxRateBps: Int
        public let stripeInvoiceID: String?
        public let subscriptionID: UUID?
        public let stripeSubscriptionID: String?
        public let tenantID: UUID
        public let tenantName: String
        public let billingEmail: String
        public let stripeCustomerID: String?
        public let lines: [(position: Int, description: String, amountCents: Int64)]
    }

    /// An invoice whose push is pending or failed, as `invoicer stripe list` prints it.
    public struct Unsynced: Sendable, Equatable {
        public let number: String
        public let id: String
        public let status: String
        public let attempts: String
        public let error: String
    }

    /// What waits for, or was refused by, Stripe, over every Invoicer.
    public struct Backlog: Sendable, Equatable {
        public let pendingInvoices: Int
        public let failedInvoices: Int
        public let failedEvents: Int
    }

    /// Claims the next invoice due for Stripe, if any, locked for the caller's transaction
    /// (`FOR UPDATE SKIP LOCKED`: any number of Invoicers share the work).
    public static func claimNext(on connection: isolated PostgresConnection) throws -> Claim? {
        guard
            let claimed = try connection.query(
                """
                SELECT id, tenant_id, stripe_attempts FROM invoices
                 WHERE stripe_status = 'pending' AND stripe_next_attempt_at <= now()
                 ORDER BY stripe_next_attempt_at, issued_at LIMIT 1 FOR UPDATE SKIP LOCKED
                """
            ).first
        else { return nil }
        return Claim(
            invoice: try claimed.decode(0, as: UUID.self), tenant: try claimed.decode(1, as: UUID.self),
            attempts: try claimed.decode(2, as: Int.self))
    }

    /// Takes the tenant's advisory lock until the caller's transaction ends: one push per
    /// Stripe customer at a time.
    public static func lockCustomer(tenant: UUID, on connection: isolated PostgresConnection) throws {
        try connection.query("SELECT pg_advisory_xact_lock(hashtextextended('stripe-customer:' || $1::text, 0))", [tenant])
    }

    /// The invoice with its tenant, subscription and lines, as the push sends them; nil
    /// when there is no such invoice. Two reads in the caller's transaction.
    public static func pushSource(invoice: UUID, on connection: isolated PostgresConnection) throws -> PushSource? {
        guard
            let row = try connection.query(
                """
                SELECT i.number, i.currency, i.total_cents, i.tax_cents, i.tax_rate_bps, i.stripe_invoice_id, i.subscription_id,
                       s.stripe_subscription_id, t.id, t.name, t.billing_email, t.stripe_customer_id
                  FROM invoices i JOIN tenants t ON t.id = i.tenant_id LEFT JOIN subscriptions s ON s.id = i.subscription_id
                 WHERE i.id = $1
                """, [invoice]
            ).first
        else { return nil }
        let lines = try connection.query(
            "SELECT position, description, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY position", [invoice]
        ).map {
            (position: try $0.decode(0, as: Int.self), description: try $0.decode(1, as: String.self), amountCents: try $0.decode(2, as: Int64.self))
        }
        return PushSource(
            invoiceID: invoice, number: try row.decode(0), currency: try row.decode(1), totalCents: try row.decode(2),
            taxCents: try row.decode(3), taxRateBps: try row.decode(4), stripeInvoiceID: row.text(5),
            subscriptionID: row.text(6).flatMap(UUID.init(uuidString:)), stripeSubscriptionID: row.text(7), tenantID: try row.decode(8),
            tenantName: try row.decode(9), billingEmail: try row.decode(10), stripeCustomerID: row.text(11), lines: lines)
    }

    /// Records the invoice pushed (its Stripe id and status, `synced`, one more attempt),
    /// in the caller's transaction.
    public static func recordSynced(
        invoice: UUID, stripeInvoiceID: String, stripeStatus: String, on connection: isolated PostgresConnection
    ) throws {
        try connection.query(
            """
            UPDATE invoices SET stripe_status = 'synced', stripe_invoice_id = $2, stripe_invoice_status = $3,
                   stripe_synced_at = now(), stripe_error = NULL, stripe_attempts = stripe_attempts + 1
             WHERE id = $1
            """, [invoice, stripeInvoiceID, stripeStatus])
    }

    /// Records a failed push: one more attempt, the error, `failed` when `final` (else still
    /// `pending`, due again in `retryInSeconds`). Only when the invoice is still pending
    /// after `attempts` attempts: a push another Invoicer made meanwhile stands. One
    /// statement, outside the push's (rolled back) transaction.
    public static func recordFailedAttempt(
        invoice: UUID, error: String, final: Bool, retryInSeconds: Int, attempts: Int, on connection: isolated PostgresConnection
    ) throws {
        try connection.query(
            """
            UPDATE invoices SET stripe_attempts = stripe_attempts + 1, stripe_error = $2,
                   stripe_status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,
                   stripe_next_attempt_at = now() + make_interval(secs => $4)
             WHERE id = $1 AND stripe_status = 'pending' AND stripe_attempts = $5
            """, [invoice, error, final, retryInSeconds, attempts])
    }

    /// Forgets the tenant's Stripe customer `customer` (gone from Stripe) and, with it, the
    /// Stripe ids of the tenant's subscriptions, in the caller's transaction.
    public static func forgetCustomer(tenant: UUID, customer: String, on connection: isolated PostgresConnection) throws {
        try connection.query(
            "UPDATE tenants SET stripe_customer_id = NULL WHERE id = $1 AND stripe_customer_id = $2", [tenant, customer])
        try connection.query("UPDATE subscriptions SET stripe_subscription_id = NULL WHERE tenant_id = $1", [tenant])
    }

    /// Records the tenant's Stripe customer, in the caller's transaction.
    public static func recordCustomer(tenant: UUID, customer: String, on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE tenants SET stripe_customer_id = $2 WHERE id = $1", [tenant, customer])
    }

    /// The Stripe subscription recorded for our subscription, if any.
    public static func stripeSubscriptionID(of subscription: UUID, on connection: isolated PostgresConnection) throws -> String? {
        try connection.query("SELECT stripe_subscription_id FROM subscriptions WHERE id = $1", [subscription]).first?.text(0)
    }

    /// Records the Stripe subscription mirroring ours, in the caller's transaction.
    public static func recordSubscription(_ subscription: UUID, stripeID: String, on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE subscriptions SET stripe_subscription_id = $2 WHERE id = $1", [subscription, stripeID])
    }

    /// Deletes the tenant's Stripe cards other than `kept` (those Stripe still holds), in
    /// the caller's transaction.
    public static func deleteStripeCards(tenant: UUID, except kept: [String], on connection: isolated PostgresConnection) throws {
        try connection.query(
            "DELETE FROM payment_methods WHERE tenant_id = $1 AND provider = 'stripe' AND NOT provider_id = ANY($2::text[])",
            [tenant, PostgresTextArray(kept)])
    }

    /// Records the Stripe invoice made for ours (before it is finalized), in the caller's transaction.
    public static func recordStripeInvoice(_ stripeID: String, of invoice: UUID, on connection: isolated PostgresConnection) throws {
        try connection.query("UPDATE invoices SET stripe_invoice_id = $2 WHERE id = $1", [invoice, stripeID])
    }

    /// Invoices whose push failed and, unless `onlyFailed`, those still pending, oldest
    /// first; one statement on any pooled connection.
    public static func unsynced(onlyFailed: Bool, on pool: PostgresPool) async throws -> [Unsynced] {
        let rows = try await pool.query(
            """
            SELECT number, id::text, stripe_status, stripe_attempts, coalesce(stripe_error, '')
              FROM invoices WHERE stripe_status = 'failed' OR (stripe_status = 'pending' AND NOT $1)
             ORDER BY issued_at, number
            """, [onlyFailed])
        return rows.map {
            Unsynced(number: $0.text(0) ?? "", id: $0.text(1) ?? "", status: $0.text(2) ?? "", attempts: $0.text(3) ?? "0", error: $0.text(4) ?? "")
        }
    }

    /// Makes failed pushes due now with their attempts reset — all, or only `invoice` (an id
    /// or a number); returns how many. One statement on any pooled connection.
    public static func retryFailed(invoice: String?, on pool: PostgresPool) async throws -> Int {
        try await pool.query(
            """
            UPDATE invoices SET stripe_status = 'pending', stripe_attempts = 0, stripe_next_attempt_at = now()
             WHERE stripe_status = 'failed' AND ($1::text IS NULL OR id::text = $1 OR number = $1)
            """, [invoice]
        ).affectedRows
    }

    /// The Stripe backlog: invoices pending and failed, and events set aside as failed.
    /// One statement on any pooled connection.
    public static func backlog(on pool: PostgresPool) async throws -> Backlog {
        let row = try await pool.query(
            """
            SELECT (SELECT count(*) FROM invoices WHERE stripe_status = 'pending'),
                   (SELECT count(*) FROM invoices WHERE stripe_status = 'failed'),
                   (SELECT count(*) FROM stripe_webhook_events WHERE failed_at IS NOT NULL AND processed_at IS NULL)
            """)[0]
        return Backlog(
            pendingInvoices: try row.decode(0, as: Int.self), failedInvoices: try row.decode(1, as: Int.self),
            failedEvents: try row.decode(2, as: Int.self))
    }
}
