import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// Issued invoices (`invoices`) and their lines (`invoice_lines`): what the Invoicer
/// writes when it issues them, and what the billing API, the Notifier and the Invoicer
/// read back. Numbers come from `InvoiceNumbers`, snapshots go to `BilledUsage`.
public enum InvoiceRecords {
    /// A subscription about to be invoiced, with its tenant's terms.
    public struct SubscriptionTerms: Sendable, Equatable {
        public let subscription: UUID
        public let tenant: UUID
        public let taxRateBps: Int
        public let currency: String
        public let paymentProvider: String
    }

    /// An existing period invoice: its subscription, its period's start and its id.
    public struct PeriodInvoice: Sendable, Equatable {
        public let subscription: UUID
        public let periodStart: Date
        public let id: UUID
    }

    /// An invoice to insert (numbered, not yet written).
    public struct NewInvoice: Sendable, Equatable {
        public let id: UUID
        public let tenant: UUID
        public let subscription: UUID
        public let billingRun: UUID
        public let number: String
        public let currency: String
        public let periodStart: Date
        public let periodEnd: Date
        public let subtotalCents: Int64
        public let taxRateBps: Int
        public let taxCents: Int64
        public let totalCents: Int64
        public let asOf: Date
        /// The tenant's payment provider: `stripe` makes the invoice's push pending.
        public let paymentProvider: String
        public let paymentTermsDays: Int

        public init(
            id: UUID, tenant: UUID, subscription: UUID, billingRun: UUID, number: String, currency: String, periodStart: Date,
            periodEnd: Date, subtotalCents: Int64, taxRateBps: Int, taxCents: Int64, totalCents: Int64, asOf: Date, paymentProvider: String,
            paymentTermsDays: Int
        ) {
            self.id = id
            self.tenant = tenant
            self.subscription = subscription
            self.billingRun = billingRun
            self.number = number
            self.currency = currency
            self.periodStart = periodStart
            self.periodEnd = periodEnd
            self.subtotalCents = subtotalCents
            self.taxRateBps = taxRateBps
            self.taxCents = taxCents
            self.totalCents = totalCents
            self.asOf = asOf
            self.paymentProvider = paymentProvider
            self.paymentTermsDays = paymentTermsDays
        }
    }

    /// A line to insert: its invoice, its position (from 1) and the plan that priced it.
    public struct NewLine: Sendable, Equatable {
        public let invoice: UUID
        public let position: Int
        public let line: InvoiceLine
        public let planSlug: String?

        public init(invoice: UUID, position: Int, line: InvoiceLine, planSlug: String?) {
            self.invoice = invoice
            self.position = position
            self.line = line
            self.planSlug = planSlug
        }
    }

    /// Which invoices a listing shows: one tenant's or every tenant's, in a status, issued in
    /// `[issuedFrom, issuedBefore)`.
    public struct Filter: Sendable, Equatable {
        public var tenant: UUID?
        public var status: String?
        public var issuedFrom: Date?
        public var issuedBefore: Date?

        public init(tenant: UUID? = nil, status: String? = nil, issuedFrom: Date? = nil, issuedBefore: Date? = nil) {
            self.tenant = tenant
            self.status = status
            self.issuedFrom = issuedFrom
            self.issuedBefore = issuedBefore
        }
    }

    /// The subscription and period start of every period invoice — of `subscriptions` only
    /// when given (a run for some tenants reads their invoices by key, not every period
    /// invoice ever issued).
    public static func periodStarts(
        of subscriptions: [UUID]? = nil, on connection: isolated PostgresConnection
    ) throws -> [(subscription: UUID, start: Date)] {
        let rows =
            if let subscriptions {
                try connection.query(
                    "SELECT subscription_id, period_start FROM invoices WHERE kind = 'period' AND subscription_id = ANY($1::uuid[])",
                    [PostgresTextArray(subscriptions.map(\.lowercasedText))])
            } else {
                try connection.query("SELECT subscription_id, period_start FROM invoices WHERE kind = 'period' AND subscription_id IS NOT NULL")
            }
        return try rows.map { (try $0.decode(0, as: UUID.self), try $0.decode(1, as: Date.self)) }
    }

    /// Of `periods` (subscription, period start), those that have their invoice, in one statement.
    public static func invoiced(
        _ periods: [(subscription: UUID, start: Instant)], on connection: isolated PostgresConnection
    ) throws -> [(subscription: UUID, start: Date)] {
        guard !periods.isEmpty else { return [] }
        return try connection.query(
            """
            SELECT i.subscription_id, i.period_start
              FROM unnest($1::uuid[], $2::timestamptz[]) AS p (subscription_id, period_start)
              JOIN invoices i ON i.kind = 'period' AND i.subscription_id = p.subscription_id AND i.period_start = p.period_start
            """,
            [
                PostgresTextArray(periods.map(\.subscription.lowercasedText)),
                PostgresTextArray(periods.map { PostgresTimestamp(microsecondsSinceEpoch: $0.start.microsecondsSinceEpoch).description }),
            ]
        ).map { (try $0.decode(0, as: UUID.self), try $0.decode(1, as: Date.self)) }
    }

    /// Whether the period of `subscription` starting at `start` has its invoice.
    public static func isInvoiced(subscription: UUID, periodStart start: Date, on connection: isolated PostgresConnection) throws -> Bool {
        try !connection.query(
            "SELECT 1 FROM invoices WHERE kind = 'period' AND subscription_id = $1 AND period_start = $2", [subscription, start]
        ).isEmpty
    }

    /// Locks `subscriptions` for the caller's transaction in one statement, in id order (two
    /// Invoicers never wait on each other in a cycle), and reads their tenants' terms.
    public static func lockSubscriptions(_ subscriptions: Set<UUID>, on connection: isolated PostgresConnection) throws -> [SubscriptionTerms] {
        try connection.query(
            """
            SELECT s.id, s.tenant_id, t.tax_rate_bps, t.currency, t.payment_provider
              FROM subscriptions s JOIN tenants t ON t.id = s.tenant_id
             WHERE s.id = ANY($1::uuid[]) ORDER BY s.id FOR UPDATE OF s
            """, [PostgresTextArray(subscriptions.map(\.lowercasedText))]
        ).map {
            SubscriptionTerms(
                subscription: try $0.decode(0, as: UUID.self), tenant: try $0.decode(1), taxRateBps: try $0.decode(2), currency: try $0.decode(3),
                paymentProvider: try $0.decode(4))
        }
    }

    /// The period invoices of `subscriptions`.
    public static func periodInvoices(of subscriptions: [UUID], on connection: isolated PostgresConnection) throws -> [PeriodInvoice] {
        try connection.query(
            "SELECT subscription_id, period_start, id FROM invoices WHERE kind = 'period' AND subscription_id = ANY($1::uuid[])",
            [PostgresTextArray(subscriptions.map(\.lowercasedText))]
        ).map {
            PeriodInvoice(
                subscription: try $0.decode(0, as: UUID.self), periodStart: try $0.decode(1, as: Date.self), id: try $0.decode(2, as: UUID.self))
        }
    }

    /// Inserts period invoices issued at `issuedAt` (due after each one's payment terms;
    /// Stripe push pending for Stripe tenants), one statement in the caller's transaction;
    /// returns each one's issue and due dates by id.
    public static func insertPeriodInvoices(
        _ invoices: [NewInvoice], issuedAt: Date, on connection: isolated PostgresConnection
    ) throws -> [UUID: (issued: Date, due: Date)] {
        func text(_ transform: (NewInvoice) -> String) -> PostgresTextArray { PostgresTextArray(invoices.map(transform)) }
        let stamp = { (date: Date) in PostgresTimestamp(date).description }
        let rows = try connection.query(
            """
            INSERT INTO invoices (id, tenant_id, subscription_id, billing_run_id, kind, number, currency, period_start, period_end,
                                  subtotal_cents, tax_rate_bps, tax_cents, total_cents, issued_at, due_at, as_of, stripe_status,
                                  stripe_next_attempt_at, customer_name, customer_email)
            SELECT u.id, tenant, subscription, run, 'period', number, u.currency, period_start, period_end, subtotal, tax_rate, tax, total,
                   $15::timestamptz, $15::timestamptz + make_interval(days => terms), as_of,
                   CASE WHEN provider = 'stripe' THEN 'pending' END, CASE WHEN provider = 'stripe' THEN now() END, t.name, t.billing_email
              FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[],
                          $9::bigint[], $10::int[], $11::bigint[], $12::bigint[], $13::timestamptz[], $14::text[], $16::int[])
                   AS u (id, tenant, subscription, run, number, currency, period_start, period_end, subtotal, tax_rate, tax, total,
                         as_of, provider, terms)
              JOIN tenants t ON t.id = u.tenant
            RETURNING id, issued_at, due_at
            """,
            [
                text { $0.id.uuidString }, text { $0.tenant.uuidString }, text { $0.subscription.uuidString }, text { $0.billingRun.uuidString },
                text(\.number), text(\.currency), text { stamp($0.periodStart) }, text { stamp($0.periodEnd) },
                text { String($0.subtotalCents) }, text { String($0.taxRateBps) }, text { String($0.taxCents) }, text { String($0.totalCents) },
                text { stamp($0.asOf) }, text(\.paymentProvider), issuedAt, text { String($0.paymentTermsDays) },
            ])
        var dates: [UUID: (issued: Date, due: Date)] = [:]
        for row in rows { dates[try row.decode(0, as: UUID.self)] = (try row.decode(1, as: Date.self), try row.decode(2, as: Date.self)) }
        return dates
    }

    /// Inserts one invoice of `kind` issued at `issuedAt`, in the caller's transaction;
    /// returns its issue and due dates.
    public static func insert(
        _ invoice: NewInvoice, kind: String, issuedAt: Date, on connection: isolated PostgresConnection
    ) throws -> (issued: Date, due: Date) {
        let issued = try connection.query(
            """
            INSERT INTO invoices (id, tenant_id, subscription_id, billing_run_id, kind, number, currency, period_start, period_end,
                                  subtotal_cents, tax_rate_bps, tax_cents, total_cents, issued_at, due_at, as_of, stripe_status,
                                  stripe_next_attempt_at, customer_name, customer_email)
            SELECT $1, $2, $3, $4, $15, $13, $5, $6, $7, $8, $9, $10, $11, $17, $17::timestamptz + make_interval(days => $16::integer), $12,
                   CASE WHEN $14 = 'stripe' THEN 'pending' END, CASE WHEN $14 = 'stripe' THEN now() END, t.name, t.billing_email
              FROM tenants t WHERE t.id = $2
            RETURNING issued_at, due_at
            """,
            [
                invoice.id, invoice.tenant, invoice.subscription, invoice.billingRun, invoice.currency, invoice.periodStart,
                invoice.periodEnd, invoice.subtotalCents, invoice.taxRateBps, invoice.taxCents, invoice.totalCents, invoice.asOf, invoice.number,
                invoice.paymentProvider, kind, invoice.paymentTermsDays, issuedAt,
            ])[0]
        return (try issued.decode(0, as: Date.self), try issued.decode(1, as: Date.self))
    }

    /// Inserts the lines of a batch of invoices, one statement in the caller's transaction.
    public static func insertLines(_ lines: [NewLine], on connection: isolated PostgresConnection) throws {
        guard !lines.isEmpty else { return }
        func text(_ transform: (NewLine) -> String?) -> PostgresTextArray { PostgresTextArray(lines.map { transform($0) ?? "" }) }
        let stamp = { (date: Date) in PostgresTimestamp(date).description }
        try connection.query(
            """
            INSERT INTO invoice_lines (invoice_id, position, kind, metric, description, quantity, unit_price_cents, amount_cents,
                                       plan_slug, period_start, period_end)
            SELECT invoice, position, kind, nullif(metric, ''), description, quantity, unit_price, amount, nullif(slug, ''),
                   period_start, period_end
              FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::bigint[],
                          $9::text[], $10::timestamptz[], $11::timestamptz[])
                   AS u (invoice, position, kind, metric, description, quantity, unit_price, amount, slug, period_start, period_end)
            """,
            [
                text { $0.invoice.uuidString }, text { String($0.position) }, text { $0.line.kind.rawValue }, text { $0.line.metric },
                text { $0.line.description }, text { $0.line.quantity.description }, text { $0.line.unitPrice.description },
                text { String($0.line.amount.value) }, text { $0.planSlug }, text { stamp($0.line.period.start.date) },
                text { stamp($0.line.period.end.date) },
            ])
    }

    /// Inserts one line, in the caller's transaction.
    public static func insertLine(_ line: NewLine, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            INSERT INTO invoice_lines (invoice_id, position, kind, metric, description, quantity, unit_price_cents, amount_cents,
                                       plan_slug, period_start, period_end)
            VALUES ($1, $2, $3, $4, $5, $6::numeric, $7::numeric, $8, $9, $10, $11)
            """,
            [
                line.invoice, line.position, line.line.kind.rawValue, line.line.metric, line.line.description, line.line.quantity.description,
                line.line.unitPrice.description, line.line.amount.value, line.planSlug, line.line.period.start.date, line.line.period.end.date,
            ])
    }

    /// The tenant's invoices, newest period first (then number), with their lines.
    public static func invoices(ofTenant tenant: UUID, on connection: isolated PostgresConnection) throws -> [InvoiceView] {
        try load("tenant_id = $1 ORDER BY period_start DESC, number DESC", [tenant], on: connection)
    }

    /// One invoice with its lines, or nil.
    public static func invoice(id: UUID, on connection: isolated PostgresConnection) throws -> InvoiceView? {
        try load("id = $1", [id], on: connection).first
    }

    /// The invoice named by `idOrNumber` (its id in any case, or its number such as
    /// `INV-2026-000042`, in either case), with its lines, or nil.
    public static func invoice(idOrNumber: String, on connection: isolated PostgresConnection) throws -> InvoiceView? {
        // Numbers are written in upper case; one typed in lower case names the same invoice.
        try load(UUID(uuidString: idOrNumber) == nil ? "number = upper($1)" : "id::text = lower($1)", [idOrNumber], on: connection).first
    }

    /// The `limit` newest invoices no notification was planned for yet (the notify
    /// benchmark's sample), with their lines.
    public static func newestNotNotified(limit: Int, on connection: isolated PostgresConnection) throws -> [InvoiceView] {
        try load(
            """
            NOT EXISTS (SELECT 1 FROM notifications n WHERE n.event_id = 'invoice.finalized:' || invoices.id)
            ORDER BY issued_at DESC LIMIT $1
            """, [limit], on: connection)
    }

    /// Up to `limit` invoices matching `filter`, newest period first (then number), after
    /// the invoice `after`; nil when `after` is not an invoice the filter's tenant may see.
    /// Keyset pagination on `(period_start, number)`, so a page costs the same however deep.
    /// Two reads: run them in one repeatable-read transaction.
    public static func page(_ filter: Filter, after: UUID?, limit: Int, on connection: isolated PostgresConnection) throws -> [InvoiceView]? {
        var conditions: [String] = []
        var parameters: [any PostgresEncodable] = []
        func add(_ value: any PostgresEncodable, _ condition: (String) -> String) {
            parameters.append(value)
            conditions.append(condition("$\(parameters.count)"))
        }
        if let tenant = filter.tenant { add(tenant) { "tenant_id = \($0)" } }
        if let status = filter.status { add(status) { "status = \($0)" } }
        if let from = filter.issuedFrom { add(from) { "issued_at >= \($0)" } }
        if let before = filter.issuedBefore { add(before) { "issued_at < \($0)" } }
        if let after {
            guard
                let cursor = try connection.query(
                    "SELECT period_start, number, tenant_id FROM invoices WHERE id = $1", [after]
                ).first, filter.tenant.map({ (try? cursor.decode(2, as: UUID.self)) == $0 }) ?? true
            else { return nil }
            add(try cursor.decode(0, as: Date.self)) { "(period_start, number) < (\($0)" }
            parameters.append(try cursor.decode(1, as: String.self))
            conditions[conditions.count - 1] += ", $\(parameters.count))"
        }
        let condition =
            (conditions.isEmpty ? "TRUE" : conditions.joined(separator: " AND "))
            + " ORDER BY period_start DESC, number DESC LIMIT \(limit)"
        return try load(condition, parameters, on: connection)
    }

    /// Invoices matching `condition` (SQL over `invoices`, with `$n` parameters), with their
    /// lines: two reads, run them in one repeatable-read transaction.
    private static func load(_ condition: String, _ parameters: [any PostgresEncodable], on connection: isolated PostgresConnection) throws
        -> [InvoiceView]
    {
        var invoices = try connection.query(
            """
            SELECT id, number, status, kind, tenant_id, subscription_id, currency, period_start, period_end, subtotal_cents,
                   tax_rate_bps, tax_cents, total_cents, issued_at,
                   stripe_status, stripe_invoice_id, stripe_invoice_status, stripe_attempts, stripe_error, due_at,
                   customer_name, customer_email
              FROM invoices WHERE \(condition)
            """, parameters
        ).map { row in
            var invoice = InvoiceView(
                id: try row.decode(0), number: try row.decode(1), status: try row.decode(2), kind: try row.decode(3),
                tenantID: try row.decode(4), subscriptionID: try row.decode(5, as: UUID?.self), currency: try row.decode(6),
                periodStart: try row.decode(7), periodEnd: try row.decode(8), subtotalCents: try row.decode(9),
                taxRateBps: try row.decode(10), taxCents: try row.decode(11), totalCents: try row.decode(12),
                issuedAt: try row.decode(13), dueAt: try row.decode(19, as: Date.self), lines: [])
            if let name = row.text(20), let email = row.text(21) { invoice.billedTo = .init(name: name, email: email) }
            invoice.stripe = try row.text(14).map { status in
                InvoiceView.StripeState(
                    status: status, invoiceID: row.text(15), invoiceStatus: row.text(16), attempts: try row.decode(17), error: row.text(18))
            }
            return invoice
        }
        guard !invoices.isEmpty else { return [] }
        let ids = PostgresTextArray(invoices.map { $0.id.uuidString.lowercased() })
        var lines: [UUID: [InvoiceView.Line]] = [:]
        for row in try connection.query(
            """
            SELECT invoice_id, kind, metric, description, trim_scale(quantity)::text, trim_scale(unit_price_cents)::text, amount_cents
              FROM invoice_lines WHERE invoice_id = ANY($1::uuid[]) ORDER BY invoice_id, position
            """, [ids])
        {
            lines[try row.decode(0, as: UUID.self), default: []].append(
                InvoiceView.Line(
                    kind: try row.decode(1), metric: try row.decode(2, as: String?.self), description: try row.decode(3),
                    quantity: row.text(4) ?? "0", unitPriceCents: row.text(5) ?? "0", amountCents: try row.decode(6)))
        }
        for index in invoices.indices { invoices[index].lines = lines[invoices[index].id] ?? [] }
        return invoices
    }
}
