import Foundation
import PostgresClient
import TallyMessaging
import TallyStore

/// Reads of issued invoices.
public struct InvoiceStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// The tenant's invoices, newest period first, with their lines.
    public func list(tenant: UUID) async throws -> [InvoiceView] {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            try InvoiceRecords.invoices(ofTenant: tenant, on: connection)
        }
    }

    /// Which invoices a listing shows: one tenant's or every tenant's (the admin), in a
    /// status, issued in `[issuedFrom, issuedBefore)`.
    public typealias Filter = InvoiceRecords.Filter

    /// Up to `limit` invoices matching `filter`, newest period first (then number), after
    /// the invoice `after`; nil when `after` is not an invoice the filter's tenant may see.
    /// Keyset pagination on `(period_start, number)`, so a page costs the same however deep.
    public func page(_ filter: Filter, after: UUID?, limit: Int) async throws -> [InvoiceView]? {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            try InvoiceRecords.page(filter, after: after, limit: limit, on: connection)
        }
    }

    /// One invoice with its lines, or nil.
    public func invoice(id: UUID) async throws -> InvoiceView? {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            try InvoiceRecords.invoice(id: id, on: connection)
        }
    }

    /// One invoice with its lines, or nil, read in the caller's transaction.
    public static func invoice(id: UUID, on connection: isolated PostgresConnection) throws -> InvoiceView? {
        try InvoiceRecords.invoice(id: id, on: connection)
    }

    /// The invoice named by its id or its number, with its lines, or nil.
    public static func invoice(idOrNumber: String, on connection: isolated PostgresConnection) throws -> InvoiceView? {
        try InvoiceRecords.invoice(idOrNumber: idOrNumber, on: connection)
    }

    /// The `limit` newest invoices no notification was planned for yet, with their lines.
    public static func newestNotNotified(limit: Int, on connection: isolated PostgresConnection) throws -> [InvoiceView] {
        try InvoiceRecords.newestNotNotified(limit: limit, on: connection)
    }
}

extension BillingEvent.InvoiceFinalized {
    /// The `invoice.finalized` event of an issued invoice, as the Invoicer writes it.
    public init(_ invoice: InvoiceView) {
        self.init(
            tenantID: invoice.tenantID, occurredAt: invoice.issuedAt, invoiceID: invoice.id, number: invoice.number, kind: invoice.kind,
            currency: invoice.currency, periodStart: invoice.periodStart, periodEnd: invoice.periodEnd, subtotalCents: invoice.subtotalCents,
            taxCents: invoice.taxCents, totalCents: invoice.totalCents, dueAt: invoice.dueAt)
    }
}
