import Foundation
import Logging
import PostgresClient
import TallyStore

/// Claims invoices waiting for Stripe, one at a time, and pushes each in one database
/// transaction: the invoice row is locked (`FOR UPDATE SKIP LOCKED`, so any number of
/// Invoicers share the work) together with a per-tenant advisory lock (one push per
/// customer at a time), and the Stripe ids and `synced` status commit together. A failed
/// push is retried with backoff (5 s, 15 s, 45 s, … at most an hour apart); after
/// `maxAttempts`, or at once for an error retrying cannot fix (a 4xx other than 409 and
/// 429), the invoice is marked `failed` with Stripe's message until `invoicer stripe retry`.
public struct StripeSync: Sendable {
    public static let maxAttempts = 8

    let api: StripeAPI
    let logger: Logger

    public init(configuration: StripeConfiguration, logger: Logger) throws {
        self.api = try StripeAPI(configuration: configuration)
        self.logger = logger
    }

    public enum Result: Sendable, Equatable {
        case idle
        case synced(invoice: UUID, stripeInvoice: String)
        case failed(invoice: UUID, error: String, final: Bool)
    }

    /// Pushes the next due invoice, if any.
    public func syncNext(on connection: PostgresConnection) async throws -> Result {
        try await connection.begin()
        do {
            guard
                let claimed = try await connection.query(
                    """
                    SELECT id, tenant_id, stripe_attempts FROM invoices
                     WHERE stripe_status = 'pending' AND stripe_next_attempt_at <= now()
                     ORDER BY stripe_next_attempt_at, issued_at LIMIT 1 FOR UPDATE SKIP LOCKED
                    """
                ).first
            else {
                try await connection.commit()
                return .idle
            }
            let invoice = try claimed.decode(0, as: UUID.self)
            let tenant = try claimed.decode(1, as: UUID.self)
            let attempts = try claimed.decode(2, as: Int.self)
            var logger = logger
            logger[metadataKey: "invoice.id"] = "\(invoice)"
            do {
                try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended('stripe-customer:' || $1::text, 0))", [tenant])
                guard let source = try await connection.withIsolation({ try StripeInvoicePusher.load(invoice, on: $0) }) else {
                    try await connection.commit()
                    return .idle
                }
                let outcome = try await StripeInvoicePusher(api: api, connection: connection, logger: logger, attempt: attempts).push(source)
                try await connection.query(
                    """
                    UPDATE invoices SET stripe_status = 'synced', stripe_invoice_id = $2, stripe_invoice_status = $3,
                           stripe_synced_at = now(), stripe_error = NULL, stripe_attempts = stripe_attempts + 1
                     WHERE id = $1
                    """, [invoice, outcome.stripeInvoiceID, outcome.stripeStatus])
                try await connection.commit()
                logger.info(
                    "invoice pushed to Stripe",
                    metadata: ["stripe.invoice": "\(outcome.stripeInvoiceID)", "stripe.status": "\(outcome.stripeStatus)"])
                return .synced(invoice: invoice, stripeInvoice: outcome.stripeInvoiceID)
            } catch {
                // Any failure of the push (Stripe's answer, or a statement of ours) counts as
                // an attempt, so one invoice that keeps failing cannot hold up the others.
                // The row lock went with the rollback: another Invoicer may have pushed it
                // since, and its outcome stands (the attempt count says whether it did).
                await connection.rollback()
                let stripeError = error as? StripeAPIError
                let final = attempts + 1 >= Self.maxAttempts || stripeError.map(Self.isPermanent) == true
                let delay = min(3600, 5 * Int(pow(3.0, Double(attempts))))
                let message = stripeError?.description ?? String(describing: error)
                try await connection.query(
                    """
                    UPDATE invoices SET stripe_attempts = stripe_attempts + 1, stripe_error = $2,
                           stripe_status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,
                           stripe_next_attempt_at = now() + make_interval(secs => $4)
                     WHERE id = $1 AND stripe_status = 'pending' AND stripe_attempts = $5
                    """, [invoice, message, final, delay, attempts])
                logger.error(
                    "Stripe push failed",
                    metadata: ["error": "\(message)", "attempt": "\(attempts + 1)", "final": "\(final)", "retry.in.s": "\(delay)"])
                return .failed(invoice: invoice, error: message, final: final)
            }
        } catch {
            await connection.rollback()
            throw error
        }
    }

    /// A Stripe answer that asking again will not change.
    static func isPermanent(_ error: StripeAPIError) -> Bool {
        (400..<500).contains(error.status) && ![404, 409, 429].contains(error.status) || error.type == "tally_total_mismatch"
    }
}

extension PostgresConnection {
    /// Runs synchronous code on the connection's isolation (reads spread over several queries).
    func withIsolation<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) throws -> T {
        try body(self)
    }
}
