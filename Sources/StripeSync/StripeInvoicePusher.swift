import BillingEngine
import Foundation
import Logging
import PostgresClient
import TallyStore

/// Pushes one issued invoice to Stripe: the tenant's customer, a $0 subscription that
/// ties Stripe's subscription events to ours, one invoice item per line (tax included
/// as its own item, so Stripe's total is ours to the cent), the invoice, finalized.
///
/// Nothing is created twice. Before creating an object the pusher looks for the one an
/// interrupted attempt may already have made (customers by email and
/// `metadata.tally_tenant_id`, subscriptions by `metadata.tally_subscription_id`,
/// invoice items by `metadata.tally_invoice_id` and `tally_line`, invoices by their
/// description naming our number), and every create carries an `Idempotency-Key`
/// derived from our ids, which Stripe itself honours for 24 hours. The caller holds the
/// invoice row and a per-tenant lock, so two Invoicers never push for one customer at once.
struct StripeInvoicePusher {
    let api: StripeAPI
    let connection: PostgresConnection
    let logger: Logger
    /// Failed pushes of this invoice so far: part of every Idempotency-Key, so a retry
    /// after a recorded failure may create again what was removed meanwhile, while a
    /// retry after a crash (nothing recorded) repeats the same keys.
    var attempt = 0

    struct Outcome: Sendable {
        let stripeInvoiceID: String
        let stripeStatus: String
    }

    /// Invoice and tenant fields the push needs.
    typealias Source = StripeSyncState.PushSource

    func push(_ source: Source) async throws -> Outcome {
        let customer = try await customer(for: source)
        try await syncPaymentMethods(tenant: source.tenantID, customer: customer)
        var invoice: StripeObject
        if let known = source.stripeInvoiceID {
            invoice = try await api.get("/v1/invoices/\(known)")
        } else if let found = try await api.list("/v1/invoices", [("customer", customer)]).first(where: { isOurs($0, source) }) {
            logger.info("found the Stripe invoice of an interrupted push", metadata: ["stripe.invoice": "\(found.id)"])
            invoice = found
        } else {
            // Every amount in Stripe's unit, or the refusal, before anything is created.
            let items = try stripeItems(source)
            _ = try StripeAmounts.stripeAmount(source.totalCents, currency: source.currency, what: "the total")
            let subscription = try await subscription(for: source, customer: customer)
            try await createItems(items, of: source, customer: customer, subscription: subscription)
            // Stripe leaves pending items off a new invoice unless asked (API 2022-08-01 on).
            var form = [
                ("customer", customer), ("description", source.description), ("metadata[tally_invoice_id]", source.key),
                ("metadata[tally_number]", source.number), ("pending_invoice_items_behavior", "include"),
            ]
            if let subscription { form.append(("subscription", subscription)) }
            invoice = try await api.post("/v1/invoices", form, idempotencyKey: "tally-invoice-\(source.key)-a\(attempt)")
            if invoice.metadata?["tally_invoice_id"] != source.key {
                // Some servers (localstripe) drop metadata given at creation; the description
                // still finds the invoice, and the metadata is set again here.
                invoice = try await api.post(
                    "/v1/invoices/\(invoice.id)", [("metadata[tally_invoice_id]", source.key), ("metadata[tally_number]", source.number)],
                    idempotencyKey: "tally-invoice-metadata-\(source.key)")
            }
        }
        try await record(invoice: invoice.id, of: source)
        // Stripe keeps a negative total (a credit); an emulator may show it as 0.
        let expected = try StripeAmounts.stripeAmount(source.totalCents, currency: source.currency, what: "the total")
        guard let total = invoice.total, Int64(total) == expected || (expected < 0 && total == 0) else {
            throw StripeAPIError(
                status: 200, type: "tally_total_mismatch", code: nil,
                message:
                    "Stripe invoice \(invoice.id) totals \(invoice.total.map(String.init) ?? "?") in Stripe's unit, ours \(expected): not finalized; "
                    + "compare its items with our lines before retrying", method: "GET", path: "/v1/invoices/\(invoice.id)", isUnknownRoute: false)
        }
        if invoice.status == "draft" {
            do {
                // auto_advance: Stripe then collects the invoice (charges the default card).
                invoice = try await api.post(
                    "/v1/invoices/\(invoice.id)/finalize", [("auto_advance", "true")], idempotencyKey: "tally-finalize-\(source.key)")
            } catch let error as StripeAPIError where error.isUnknownRoute {
                // An emulator without the endpoint (localstripe): the invoice stays a draft there.
                logger.warning("the Stripe endpoint cannot finalize invoices; left as a draft", metadata: ["stripe.invoice": "\(invoice.id)"])
            }
        }
        return Outcome(stripeInvoiceID: invoice.id, stripeStatus: invoice.status ?? "unknown")
    }

    private func isOurs(_ invoice: StripeObject, _ source: Source) -> Bool {
        invoice.metadata?["tally_invoice_id"] == source.key || invoice.description == source.description
    }

    /// Whether Stripe still has the object at `path` (a 404 or `deleted: true` says it
    /// was removed, e.g. in Stripe's dashboard, or the emulator restarted empty).
    private func exists(_ path: String) async throws -> Bool {
        try await object(path) != nil
    }

    /// The object at `path`, or nil when Stripe no longer has it.
    private func object(_ path: String) async throws -> StripeObject? {
        do {
            let found = try await api.get(path)
            return found.deleted == true ? nil : found
        } catch let error as StripeAPIError where error.status == 404 && !error.isUnknownRoute {
            return nil
        }
    }

    /// A stable 64-bit FNV-1a digest, in hex: part of an Idempotency-Key naming a value.
    static func fingerprint(_ text: String) -> String {
        let digest = text.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return String(digest, radix: 16)
    }

    /// The tenant's Stripe customer: recorded (and still in Stripe), found by email and
    /// metadata, or created. A recorded customer Stripe no longer has is created again —
    /// safe, as nothing of it is left to duplicate — with the tenant's Stripe
    /// subscriptions forgotten with it; the new Idempotency-Key names the one it replaces.
    private func customer(for source: Source) async throws -> String {
        var replaced: String?
        if let known = source.stripeCustomerID {
            if let stored = try await object("/v1/customers/\(known)") {
                // A name or billing email changed since (PATCH /v1/tenants): Stripe's receipts
                // and its own emails go where ours do.
                if stored.email != source.billingEmail || stored.name != source.tenantName {
                    _ = try await api.post(
                        "/v1/customers/\(known)", [("name", source.tenantName), ("email", source.billingEmail)],
                        // Per invoice push and attempt: A → B → A within Stripe's 24 h would
                        // otherwise replay the first A request and leave B.
                        idempotencyKey:
                            "tally-customer-update-\(source.key)-a\(attempt)-\(Self.fingerprint(source.tenantName + "\u{0}" + source.billingEmail))")
                    logger.info("Stripe customer updated", metadata: ["tenant.id": "\(source.tenantID)", "stripe.customer": "\(known)"])
                }
                return known
            }
            logger.warning(
                "the tenant's Stripe customer is gone; creating it again",
                metadata: ["tenant.id": "\(source.tenantID)", "stripe.customer": "\(known)"])
            try await StripeSyncState.forgetCustomer(tenant: source.tenantID, customer: known, on: connection)
            replaced = known
        }
        let id: String
        if let found = try await api.list("/v1/customers", [("email", source.billingEmail)])
            .first(where: { $0.metadata?["tally_tenant_id"] == source.tenantID.uuidString.lowercased() })
        {
            id = found.id
        } else {
            id = try await api.post(
                "/v1/customers",
                [
                    ("name", source.tenantName), ("email", source.billingEmail),
                    ("metadata[tally_tenant_id]", source.tenantID.uuidString.lowercased()),
                ],
                idempotencyKey: "tally-customer-\(source.tenantID.uuidString.lowercased())" + (replaced.map { "-after-\($0)" } ?? "")
            ).id
            logger.info("Stripe customer created", metadata: ["tenant.id": "\(source.tenantID)", "stripe.customer": "\(id)"])
        }
        try await StripeSyncState.recordCustomer(tenant: source.tenantID, customer: id, on: connection)
        return id
    }

    /// The Stripe subscription mirroring ours (a $0 plan: amounts come as invoice items),
    /// so that Stripe's `customer.subscription.*` events reach our subscription.
    private func subscription(for source: Source, customer: String) async throws -> String? {
        guard let ours = source.subscriptionID else { return nil }
        // Recorded for this customer (not cleared with a customer created again) and still in Stripe.
        let recorded = try await StripeSyncState.stripeSubscriptionID(of: ours, on: connection)
        var replaced: String?
        if let known = recorded {
            guard try await !exists("/v1/subscriptions/\(known)") else { return known }
            logger.warning("the Stripe subscription is gone; creating it again", metadata: ["stripe.subscription": "\(known)"])
            replaced = known
        }
        let key = ours.uuidString.lowercased()
        let id: String
        if let found = try await api.list("/v1/subscriptions", [("customer", customer), ("status", "all")])
            .first(where: { $0.metadata?["tally_subscription_id"] == key })
        {
            id = found.id
        } else {
            let plan = try await plan(currency: source.currency)
            id = try await api.post(
                "/v1/subscriptions",
                [("customer", customer), ("items[0][plan]", plan), ("metadata[tally_subscription_id]", key)],
                idempotencyKey: "tally-subscription-\(key)-\(customer)" + (replaced.map { "-after-\($0)" } ?? "")
            ).id
        }
        try await StripeSyncState.recordSubscription(ours, stripeID: id, on: connection)
        return id
    }

    private func plan(currency: String) async throws -> String {
        let id = "tally_usage_\(currency)"
        do {
            return try await api.get("/v1/plans/\(id)").id
        } catch let error as StripeAPIError where error.status == 404 && !error.isUnknownRoute {
            return try await api.post(
                "/v1/plans",
                [("id", id), ("amount", "0"), ("currency", currency), ("interval", "month"), ("product[name]", "Tally usage-based billing")],
                idempotencyKey: "tally-plan-\(id)"
            ).id
        }
    }

    /// One pending invoice item per line not yet in Stripe, then tax. Pending items of
    /// another of our invoices are what an interrupted push of that invoice left (pushes
    /// of one customer take turns): the new invoice would take them in, so they are
    /// deleted here and that push creates them again when it is retried.
    private func createItems(
        _ items: [(line: String, description: String, amount: Int64)], of source: Source, customer: String, subscription: String?
    ) async throws {
        let pending = try await api.list("/v1/invoiceitems", [("customer", customer)]).filter { $0.invoice == nil }
        for leftover in pending {
            guard let owner = leftover.metadata?["tally_invoice_id"], owner != source.key else { continue }
            logger.warning(
                "removing a pending Stripe item an interrupted push of another invoice left",
                metadata: ["stripe.item": "\(leftover.id)", "tally.invoice": "\(owner)"])
            _ = try await api.send(method: "DELETE", path: "/v1/invoiceitems/\(leftover.id)")
        }
        let existing = Set(
            pending.filter { $0.metadata?["tally_invoice_id"] == source.key }.compactMap { $0.metadata?["tally_line"] })
        for item in items where !existing.contains(item.line) {
            var form = [
                ("customer", customer), ("amount", String(item.amount)), ("currency", source.currency), ("description", item.description),
                ("metadata[tally_invoice_id]", source.key), ("metadata[tally_line]", item.line),
            ]
            if let subscription { form.append(("subscription", subscription)) }
            _ = try await api.post("/v1/invoiceitems", form, idempotencyKey: "tally-item-\(source.key)-\(item.line)-a\(attempt)")
        }
    }

    /// One Stripe item per line, then tax, each amount in Stripe's unit (or the refusal).
    private func stripeItems(_ source: Source) throws -> [(line: String, description: String, amount: Int64)] {
        var items = try source.lines.map { line in
            (
                line: String(line.position), description: line.description,
                amount: try StripeAmounts.stripeAmount(line.amountCents, currency: source.currency, what: "line \(line.position)")
            )
        }
        if source.taxCents != 0 {
            items.append(
                (
                    line: "tax", description: "Tax \(BasisPoints.percentText(source.taxRateBps))",
                    amount: try StripeAmounts.stripeAmount(source.taxCents, currency: source.currency, what: "the tax")
                ))
        }
        return items
    }

    /// The customer's cards as Stripe holds them: provider id, brand, last4, expiry.
    private func syncPaymentMethods(tenant: UUID, customer: String) async throws {
        let cards = try await api.list("/v1/payment_methods", [("customer", customer), ("type", "card")])
        for card in cards {
            try await connection.withIsolation { connection in
                try PaymentMethodRecords.upsertStripeCard(
                    tenant: tenant, providerID: card.id, brand: card.card?.brand, last4: card.card?.last4, expMonth: card.card?.expMonth,
                    expYear: card.card?.expYear, on: connection)
            }
        }
        try await StripeSyncState.deleteStripeCards(tenant: tenant, except: cards.map(\.id), on: connection)
    }

    private func record(invoice: String, of source: Source) async throws {
        try await StripeSyncState.recordStripeInvoice(invoice, of: source.invoiceID, on: connection)
    }
}

extension StripeSyncState.PushSource {
    /// The description of the Stripe invoice, naming our number (how an interrupted push finds it).
    var description: String { "Tally invoice \(number)" }
    /// Our invoice id as Stripe's metadata and Idempotency-Keys carry it.
    var key: String { invoiceID.uuidString.lowercased() }
}
