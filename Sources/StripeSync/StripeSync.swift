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
            guard let claimed = try await StripeSyncState.claimNext(on: connection) else {
                try await connection.commit()
                return .idle
            }
            let invoice = claimed.invoice
            let tenant = claimed.tenant
            let attempts = claimed.attempts
            var logger = logger
            logger[metadataKey: "invoice.id"] = "\(invoice)"
            do {
                try await StripeSyncState.lockCustomer(tenant: tenant, on: connection)
                guard let source = try await StripeSyncState.pushSource(invoice: invoice, on: connection) else {
                    try await connection.commit()
                    return .idle
                }
                let outcome = try await StripeInvoicePusher(api: api, connection: connection, logger: logger, attempt: attempts).push(source)
                try await StripeSyncState.recordSynced(
                    invoice: invoice, stripeInvoiceID: outcome.stripeInvoiceID, stripeStatus: outcome.stripeStatus, on: connection)
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
                try await StripeSyncState.recordFailedAttempt(
                    invoice: invoice, error: message, final: final, retryInSeconds: delay, attempts: attempts, on: connection)
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
        (400..<500).contains(error.status) && ![404, 409, 429].contains(error.status)
            || ["tally_total_mismatch", "tally_currency_unit"].contains(error.type)
    }
}

extension PostgresConnection {
    /// Runs synchronous code on the connection's isolation (reads spread over several queries).
    func withIsolation<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) throws -> T {
        try body(self)
    }
}
