import BillingEngine
import CivilTime
import Foundation
import Hummingbird
import InvoicePDF
import Invoicing
import Logging
import NIOCore
import PostgresClient
import TallyHTTP
import TallyStore

/// `/v1/invoices` (a tenant key sees its own) and `/v1/billing-runs` (admin only).
///
/// A billing run is planned here, in one transaction with its commands in the outbox;
/// the Invoicer processes publish and carry them out, and the run's status counts them.
struct InvoiceRoutes {
    let pool: PostgresPool
    let invoices: InvoiceStore
    let tenants: TenantStore
    let grace: TimeInterval
    let seller: InvoiceDocument.Party

    func register(on router: Router<TallyRequestContext>) {
        router.get("v1/invoices", use: list)
        router.get("v1/invoices/upcoming", use: upcoming)
        router.get("v1/invoices/:invoiceID", use: show)
        router.post("v1/billing-runs", use: createRun)
        router.get("v1/billing-runs", use: listRuns)
        router.get("v1/billing-runs/:runID", use: showRun)
    }

    /// A tenant's invoices (the admin names `tenant_id`, or omits it for every tenant's),
    /// newest period first, filtered by `status` and issue time `[from, to)`, a page at a time.
    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> Page<InvoiceView> {
        let query = request.uri.queryParameters
        let principal = try context.requirePrincipal()
        let page = try PageRequest(query)
        var filter = InvoiceStore.Filter()
        if principal != .admin || query.get("tenant_id") != nil { filter.tenant = try context.tenantInScope(query.get("tenant_id")) }
        if let status = query.get("status") {
            guard Self.statuses.contains(status) else { throw APIError.invalid("status", "must be one of \(Self.statuses.joined(separator: ", "))") }
            filter.status = status
        }
        filter.issuedFrom = try query.get("from").map { try SubscriptionRoutes.instant($0, field: "from") }
        filter.issuedBefore = try query.get("to").map { try SubscriptionRoutes.instant($0, field: "to") }
        guard let fetched = try await invoices.page(filter, after: page.startingAfter, limit: page.limit + 1) else {
            throw PageRequest.unknownCursor
        }
        return page.page(fetched: fetched).map { $0.visible(to: principal) }
    }

    static let statuses = ["open", "paid", "void", "uncollectible"]

    /// `GET /v1/billing-runs` (admin): the runs, newest first, a page at a time.
    @Sendable func listRuns(_ request: Request, context: TallyRequestContext) async throws -> Page<BillingRunStatus> {
        try context.requireAdmin()
        let page = try PageRequest(request.uri.queryParameters)
        guard let fetched = try await pool.withTransaction({ try BillingRunStatus.page(after: page.startingAfter, limit: page.limit + 1, on: $0) })
        else { throw PageRequest.unknownCursor }
        return page.page(fetched: fetched)
    }

    /// What the open period would bill now (or at `at`), with the usage counted so far.
    @Sendable func upcoming(_ request: Request, context: TallyRequestContext) async throws -> UpcomingInvoice {
        let tenant = try context.tenantInScope(request.uri.queryParameters.get("tenant_id"))
        let at = try request.uri.queryParameters.get("at").map { try SubscriptionRoutes.instant($0, field: "at") } ?? TallyClock.now()
        let statement: UsageStatement?
        do {
            statement = try await pool.withTransaction(isolation: .repeatableRead) {
                try UsageStatement.load(tenant: tenant, asOf: Instant(at), on: $0)
            }
        } catch let error as BillingError {
            throw APIError.unpriceable(error, what: "The upcoming invoice")
        }
        // No statement: no such tenant (as GET /v1/usage says); no draft: no billed period open.
        guard let statement else { throw APIError.notFound("tenant", field: "tenant_id") }
        guard let upcoming = UpcomingInvoice(statement, asOf: at) else {
            throw APIError(
                .notFound, code: "NO_OPEN_PERIOD",
                message: "The tenant has no billed period open at \(at.ISO8601Format()) (no subscription, a trial, or it ended); "
                    + "pass `at` to look at another time.", field: "at")
        }
        // Times are written within years 2000–9999 (RFC 3339 has four-digit years).
        guard upcoming.periodEnd < SubscriptionRoutes.yearTenThousand else {
            throw APIError.invalid("at", "falls in a period that ends after 9999-12-31; ask for an earlier time")
        }
        return upcoming
    }

    /// `/v1/invoices/{id}` as JSON, `/v1/invoices/{id}.pdf` as the invoice PDF.
    @Sendable func show(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let parameter = context.parameters.get("invoiceID") ?? ""
        let wantsPDF = parameter.hasSuffix(".pdf")
        guard let id = UUID(uuidString: wantsPDF ? String(parameter.dropLast(4)) : parameter),
            let invoice = try await invoices.invoice(id: id), principal.canAccess(tenant: invoice.tenantID)
        else { throw APIError.notFound("invoice") }
        guard wantsPDF else {
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder.tally.encode(invoice.visible(to: principal)))))
        }
        guard let tenant = try await tenants.tenant(id: invoice.tenantID) else { throw APIError.notFound("invoice") }
        return try Self.pdf(invoice, tenant: tenant, seller: seller)
    }

    /// The invoice's PDF as a response (the API and the dashboard's link).
    static func pdf(_ invoice: InvoiceView, tenant: Tenant, seller: InvoiceDocument.Party) throws -> Response {
        // Billed to the tenant as it was when the invoice was issued: a renamed tenant's old
        // invoices keep their name and address (SPEC §2 rule 6).
        let customer = invoice.billedTo.map { InvoiceDocument.Party(name: $0.name, email: $0.email) }
        let pdf = try InvoiceDocument(
            invoice: invoice, seller: seller, customer: customer ?? .init(name: tenant.name, email: tenant.billingEmail)
        ).render()
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/pdf", .contentDisposition: "inline; filename=\"\(invoice.number).pdf\"",
                .cacheControl: "private, no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: pdf)))
    }

    @Sendable func createRun(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<BillingRunStatus> {
        try context.requireAdmin()
        let body = try await request.decodeOptionalJSON(CreateRunRequest.self, context: context)
        let asOf = try body?.asOf.map { try SubscriptionRoutes.instant($0, field: "as_of") } ?? TallyClock.now()
        let tenant = try body?.tenantID.map { text in
            guard let id = UUID(uuidString: text) else { throw APIError.invalid("tenant_id", "must be a tenant id (UUID)") }
            return id
        }
        let status: BillingRunStatus
        do {
            status = try await pool.withTransaction { connection in
                let plan = try BillingRunPlanner.plan(asOf: asOf, grace: grace, tenants: tenant.map { [$0] }, on: connection)
                guard let status = try BillingRunStatus.load(plan.runID, on: connection) else { throw APIError.notFound("billing run") }
                return status
            }
        } catch is UnknownTenant {
            throw APIError.notFound("tenant", field: "tenant_id")
        }
        context.logger.info("billing run planned", metadata: ["billing_run.id": "\(status.id)", "due": "\(status.due)"])
        return EditedResponse(status: .accepted, response: status)
    }

    @Sendable func showRun(_ request: Request, context: TallyRequestContext) async throws -> BillingRunStatus {
        try context.requireAdmin()
        guard let id = UUID(uuidString: context.parameters.get("runID") ?? ""),
            let status = try await pool.withTransaction({ try BillingRunStatus.load(id, on: $0) })
        else { throw APIError.notFound("billing run") }
        return status
    }
}

struct CreateRunRequest: ClosedRequestBody {
    let asOf: String?
    /// Only this tenant's subscriptions (a re-run for one customer); default every tenant.
    let tenantID: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case asOf = "as_of"
        case tenantID = "tenant_id"
    }
}

extension InvoiceView: ResponseEncodable {}
extension BillingRunStatus: ResponseEncodable {}
extension UpcomingInvoice: ResponseEncodable {}
