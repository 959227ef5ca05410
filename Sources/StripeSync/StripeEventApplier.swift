import CivilTime
import Foundation
import PostgresClient
import TallyMessaging
import TallyOutbox
import TallyStore

/// Applies the Stripe events the billing API verified and stored, oldest first, each
/// once (rows are claimed with SKIP LOCKED and marked processed in the same transaction):
/// - `invoice.paid`, `invoice.payment_succeeded` → our invoice becomes `paid`;
/// - `invoice.payment_failed` → `invoice.payment_failed` on `billing.events` (outbox);
/// - `customer.subscription.deleted` → our subscription ends then (if it had not).
/// Our invoice is found by its Stripe id, or by `metadata.tally_invoice_id` while it has
/// none; a payment is applied only in the invoice's currency, for its whole amount, from
/// the tenant's own customer (else the event is set aside with the reason).
public enum StripeEventApplier {
    /// Applies up to 100 pending events, oldest first, each in a transaction of its own;
    /// returns how many. One that fails (a payload we cannot read, a constraint) is marked
    /// `failed_at` with the reason and the others are applied. A lost connection, or a
    /// deadlock or serialization failure, leaves the event pending and ends the sweep (it
    /// is retried). Each its own transaction: an event ending a subscription takes its
    /// tenant's usage lock (migration 023), and a hundred in one transaction took them in
    /// the events' order: a deadlock with a statement taking many in order (a plan
    /// migration), and the event it hit was set aside as failed.
    public static func applyPending(now: @Sendable () -> Date = { TallyClock.now() }, on pool: PostgresPool) async throws -> Int {
        var applied = 0
        var lostRaces = 0
        while applied < 100 {
            let claimed: Bool
            do {
                claimed = try await pool.withTransaction { connection -> Bool in
                    guard let event = try StripeWebhookEvents.claimNext(on: connection) else { return false }
                    try applyClaimed(event, now: now(), on: connection)
                    return true
                }
            } catch let error as PostgresError where error.isRetryableConflict && lostRaces < 3 {
                lostRaces += 1  // at once again (the race is over), a few times, then at the next sweep
                continue
            }
            guard claimed else { break }
            applied += 1
        }
        return applied
    }

    /// Applies one claimed event in the caller's transaction, in a savepoint: marked
    /// processed, or failed with the reason; a connection error or a lost race is rethrown.
    static func applyClaimed(_ event: StripeWebhookEvents.Pending, now: Date, on connection: isolated PostgresConnection) throws {
        let id = event.id
        do {
            try connection.withSavepoint("stripe_event") { connection in
                try apply(id, type: event.type, now: now, on: connection)
                try StripeWebhookEvents.markProcessed(id, on: connection)
            }
        } catch {
            if let error = error as? PostgresError, error.isConnectionError || error.isRetryableConflict { throw error }
            let reason = (error as? PostgresError).map { "\($0.message)\($0.detail.map { " (\($0))" } ?? "")" } ?? "\(error)"
            try StripeWebhookEvents.markFailed(id, reason: reason, on: connection)
        }
    }

    /// Applies one stored event.
    private static func apply(_ id: String, type: String, now: Date, on connection: isolated PostgresConnection) throws {
        if type.hasPrefix("invoice.") { try StripeWebhookEvents.recordStripeInvoiceStatus(event: id, on: connection) }
        switch type {
        case "invoice.paid", "invoice.payment_succeeded":
            guard let payment = try StripeWebhookEvents.invoicePayment(event: id, on: connection) else { break }
            try checkPayment(payment)
            try StripeWebhookEvents.markPaid(payment.invoiceID, on: connection)
        case "invoice.payment_failed":
            if let failure = try paymentFailure(event: id, on: connection) {
                try Outbox.enqueue(.invoicePaymentFailed(failure), on: connection)
            }
        case "customer.subscription.deleted", "customer.subscription.updated":
            try applySubscriptionEvent(id, now: now, on: connection)
        case "payment_method.attached", "payment_method.updated", "payment_method.automatically_updated":
            if let card = try StripeWebhookEvents.card(event: id, on: connection) {
                try PaymentMethodRecords.upsertStripeCard(
                    tenant: card.tenant, providerID: card.providerID, brand: card.brand, last4: card.last4, expMonth: card.expMonth,
                    expYear: card.expYear, on: connection)
            }
        case "payment_method.detached":
            try StripeWebhookEvents.deleteDetachedCard(event: id, on: connection)
        default:
            break  // recorded, nothing of ours to change
        }
    }

    /// A payment event that does not pay our invoice as issued: set aside (`invoicer stripe
    /// list`) with the reason, the invoice left open. Marking it paid on any `invoice.paid`
    /// naming it let 1 JPY pay a 328.90 USD invoice, and another customer's invoice pay ours.
    struct PaymentMismatch: Error, CustomStringConvertible {
        let description: String
    }

    static func checkPayment(_ payment: StripeWebhookEvents.InvoicePayment) throws {
        let invoice = "invoice \(payment.number)"
        let currency = payment.currency.uppercased()
        guard !payment.otherCustomer else {
            throw PaymentMismatch(description: "the paid Stripe invoice belongs to another customer than \(invoice)'s tenant; left open")
        }
        if let paidCurrency = payment.paidCurrency, paidCurrency.uppercased() != currency {
            throw PaymentMismatch(description: "paid in \(paidCurrency.uppercased()), \(invoice) is in \(currency); left open")
        }
        let owed = try StripeAmounts.stripeAmount(payment.totalCents, currency: payment.currency, what: invoice)
        // Stripe's total is ours to the cent (the pusher finalizes nothing else; an emulator
        // shows a credit as 0).
        if let total = payment.stripeTotal, total != owed, !(owed < 0 && total == 0) {
            throw PaymentMismatch(
                description: "the paid Stripe invoice totals \(total) in Stripe's unit of \(currency), \(invoice) totals \(owed); left open")
        }
        // A credit note issued in Stripe before payment lowered what was collected; Tally's invoice has none.
        if let credited = payment.prePaymentCredited, credited != 0 {
            throw PaymentMismatch(
                description: "Stripe credited \(credited) in its unit of \(currency) on it before payment, \(invoice) has no such credit; left open")
        }
        // What settled it: the charge, and the customer's balance it moved (a credit balance,
        // from our credit invoices pushed, pays part or all of it; `amount_paid` alone is no
        // measure of it).
        if payment.paidOutOfBand {
            // Marked paid in Stripe by someone who received the money elsewhere (a wire): a
            // payment of the whole invoice, whatever Stripe's API version says it charged.
        } else if let paid = payment.amountPaid, let starting = payment.startingBalance, let ending = payment.endingBalance {
            let settled = paid + (ending - starting)
            guard settled >= owed else {
                throw PaymentMismatch(
                    description: "Stripe reports \(settled) settled (paid and from the customer's balance) in its unit of \(currency), "
                        + "\(invoice) totals \(owed); left open")
            }
        } else if let remaining = payment.amountRemaining {
            guard remaining <= 0 else {
                throw PaymentMismatch(description: "Stripe reports \(remaining) in its unit of \(currency) still due on \(invoice); left open")
            }
        } else if let paid = payment.amountPaid, paid < owed {
            throw PaymentMismatch(description: "Stripe reports \(paid) paid in its unit of \(currency), \(invoice) totals \(owed); left open")
        }
    }

    /// Our invoice Stripe failed to collect, with what Stripe said about it: the amount
    /// due, how many attempts, when it tries next, and its reason when the event has one.
    private static func paymentFailure(
        event id: String, on connection: isolated PostgresConnection
    ) throws -> BillingEvent.InvoicePaymentFailed? {
        guard let failure = try StripeWebhookEvents.paymentFailure(event: id, on: connection) else { return nil }
        return BillingEvent.InvoicePaymentFailed(
            tenantID: failure.tenantID, occurredAt: failure.receivedAt, invoiceID: failure.invoiceID, number: failure.number,
            currency: failure.currency, amountDueCents: failure.amountDueCents, attemptCount: failure.attemptCount,
            nextAttemptAt: failure.nextAttemptAt, failureMessage: failure.failureMessage, stripeEventID: id)
    }

    /// Stripe ended the subscription (deleted, or updated to a final status) or scheduled
    /// its end (`cancel_at_period_end`): ours ends likewise, never inside a period already
    /// invoiced (those stand; the end moves to the last invoiced period's end):
    /// - ended: when Stripe says it ended (`ended_at`, else `canceled_at`; it ended when the
    ///   event was applied, so webhook delays were billed), else now; also when ours was
    ///   only set to end later (it was left to run to that end);
    /// - at period end: at the end of our period containing now, or at the last invoiced
    ///   period's end when that is later (the period after it was billed too);
    /// - ended by a scheduled end run out (`cancel_at_period_end`, ended where Stripe was set
    ///   to end it): at the end of our period containing that end, or ours if it ends sooner.
    ///   Stripe's mirror is monthly: its end cut a yearly or differently anchored subscription
    ///   of ours short.
    /// Stripe undoing a scheduled end (`cancel_at_period_end` back to false) is not applied:
    /// our API has no undo either (README "Left").
    private static func applySubscriptionEvent(_ eventID: String, now: Date, on connection: isolated PostgresConnection) throws {
        guard let change = try StripeWebhookEvents.subscriptionChange(event: eventID, on: connection) else { return }
        let ended = change.type == "customer.subscription.deleted" || ["canceled", "incomplete_expired"].contains(change.status ?? "")
        guard ended || (change.cancelAtPeriodEnd && !change.hasEnd) else { return }
        let plans = try SubscriptionRecords.plans(on: connection)
        let floor = change.lastInvoicedPeriodEnd ?? .distantPast
        func cancel(at: Date, atPeriodEnd: Bool) throws -> Bool {
            do {
                try SubscriptionStore.cancel(change.subscription, at: at, atPeriodEnd: atPeriodEnd, now: now, plans: plans, on: connection)
                return true
            } catch is SubscriptionRefusal {
                return false
            }
        }
        // A scheduled end run out: Stripe ended it where it was set to end (`cancel_at`, else
        // its period's end). Not saying where, it was ended outright.
        let ranOut =
            if ended, change.cancelAtPeriodEnd, let endedAt = change.endedAt, let scheduled = change.scheduledEnd {
                endedAt >= scheduled.addingTimeInterval(-1)
            } else {
                false
            }
        if ranOut {
            // At our period end containing Stripe's end (an end ours has is kept unless this is sooner).
            let at = min(change.endedAt ?? now, now)
            if let last = change.lastInvoicedPeriodEnd, last >= at {
                _ = try cancel(at: last, atPeriodEnd: false)
            } else {
                _ = try cancel(at: at, atPeriodEnd: true)
            }
        } else if ended {
            // Stripe's own end first; refused (before our start, or not sooner than the end
            // ours has), then now, as before.
            if let endedAt = change.endedAt, endedAt < now, try cancel(at: max(endedAt, floor), atPeriodEnd: false) { return }
            _ = try cancel(at: max(now, floor), atPeriodEnd: false)
        } else if let last = change.lastInvoicedPeriodEnd, last >= now {
            _ = try cancel(at: last, atPeriodEnd: false)
        } else {
            _ = try cancel(at: now, atPeriodEnd: true)
        }
    }
}
