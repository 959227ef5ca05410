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

/// The pages of the dashboard, each built from the stores and the usage read model.
extension DashboardRoutes {
    func navigation(_ viewer: Viewer, current: String) -> Navigation {
        var links: [(String, String)] = [
            ("/dashboard/usage", "Usage"), ("/dashboard/trend", "Trend"), ("/dashboard/upcoming", "Upcoming charges"),
            ("/dashboard/invoices", "Invoices"), ("/dashboard/alerts", "Alerts"), ("/dashboard/webhooks", "Webhooks"),
        ]
        if viewer.session.principal == .admin { links.insert(("/dashboard/tenants", "All tenants"), at: 0) }
        return Navigation(
            links: links.map { path, label in
                Navigation.Link(href: path == "/dashboard/tenants" ? path : viewer.link(path), label: label, current: path == current)
            },
            csrf: viewer.session.csrfToken)
    }

    func statement(of tenant: UUID) async throws -> UsageStatement {
        let now = Instant(TallyClock.now())
        let loaded: UsageStatement?
        do {
            loaded = try await pool.withTransaction(isolation: .repeatableRead) { connection in
                try UsageStatement.load(tenant: tenant, asOf: now, on: connection)
            }
        } catch let error as BillingError {
            throw APIError.unpriceable(error, what: "The usage so far")
        }
        guard let statement = loaded else { throw APIError.notFound("tenant") }
        return statement
    }

    // MARK: Usage

    func usagePage(_ viewer: Viewer) async throws -> Response {
        let statement = try await statement(of: viewer.tenant.id)
        let cards = statement.metrics.map { UsagePage.Card($0, previous: statement.previous, currency: statement.currency) }
        return try html(
            "usage",
            UsagePage(
                title: "Usage", nav: navigation(viewer, current: "/dashboard/usage"), tenantName: viewer.tenant.name,
                periodLabel: InvoiceText.period(statement.period), periodKind: Self.kindText(statement),
                plan: statement.plan?.name, empty: Self.emptyState(statement), cards: cards))
    }

    static func kindText(_ statement: UsageStatement) -> String {
        switch statement.kind {
        case .billing: "current billing period"
        case .trial: "trial: usage is recorded, never billed"
        case .calendarMonth: "no subscription: usage is recorded and not billed"
        }
    }

    static func emptyState(_ statement: UsageStatement) -> String? {
        guard statement.metrics.allSatisfy({ $0.value == .zero }) else { return nil }
        switch statement.kind {
        case .calendarMonth: return "No subscription and no usage yet this month. Usage you send appears here within seconds."
        case .trial: return "Your trial has no usage yet. Usage you send appears here within seconds."
        case .billing: return "No usage yet this period. Usage you send appears here within seconds."
        }
    }

    // MARK: Trend

    func trendPage(_ viewer: Viewer) async throws -> Response {
        let range = UsageRange(rawValue: viewer.request.uri.queryParameters.get("range") ?? "") ?? .currentPeriod
        let (history, _) = try await UsageHistoryRoutes.read(
            tenant: viewer.tenant.id, range: range, granularity: .day, metric: nil, now: Instant(TallyClock.now()), pool: pool)
        let units = try await pool.withTransaction { try MetricCatalogRecords.units(on: $0) }
        let rows = history.buckets.enumerated().map { index, bucket in
            TrendPage.Row(
                label: TrendChart.label(bucket, history.granularity),
                values: history.series.map { InvoiceText.grouped($0.values[index].description) })
        }
        return try html(
            "trend",
            TrendPage(
                title: "Trend", nav: navigation(viewer, current: "/dashboard/trend"), tenantName: viewer.tenant.name,
                ranges: UsageRange.allCases.map { option in
                    TrendPage.RangeLink(
                        href: viewer.link("/dashboard/trend", [("range", option.rawValue)]), label: option.label, current: option == range)
                },
                rangeLabel: range.label, granularity: history.granularity.rawValue,
                empty: history.series.isEmpty ? "No usage in this range yet." : nil,
                svg: TrendChart(history: history, units: units).svg, metrics: history.series.map(\.metric), rows: rows))
    }

    // MARK: Upcoming charges

    func upcomingPage(_ viewer: Viewer) async throws -> Response {
        let statement = try await statement(of: viewer.tenant.id)
        let invoice = UpcomingInvoice(statement, asOf: statement.counted.end.date).map { upcoming in
            UpcomingPage.Invoice(
                periodLabel: InvoiceText.period(statement.upcoming?.period.billed ?? statement.period),
                plan: statement.upcoming?.plan.name ?? statement.plan?.name ?? upcoming.plan,
                asOf: InvoiceText.day(statement.counted.end),
                lines: upcoming.lines.map { line in
                    UpcomingPage.Line(
                        description: line.description, quantity: InvoiceText.grouped(line.quantity),
                        unitPrice: InvoiceDocument.unitPrice(line.unitPriceCents, currency: upcoming.currency),
                        amount: InvoiceDocument.money(line.amountCents, currency: upcoming.currency))
                },
                subtotal: InvoiceDocument.money(upcoming.subtotalCents, currency: upcoming.currency),
                taxRate: InvoiceDocument.percent(upcoming.taxRateBps), tax: InvoiceDocument.money(upcoming.taxCents, currency: upcoming.currency),
                total: InvoiceDocument.money(upcoming.totalCents, currency: upcoming.currency))
        }
        let empty: String? =
            switch statement.kind {
            case .billing: nil
            case .trial: "You are in a trial until \(InvoiceText.day(statement.period.end)): nothing is billed for it."
            case .calendarMonth: "There is no subscription, so nothing is billed. Usage is still recorded."
            }
        return try html(
            "upcoming",
            UpcomingPage(
                title: "Upcoming charges", nav: navigation(viewer, current: "/dashboard/upcoming"), tenantName: viewer.tenant.name,
                empty: empty, invoice: invoice))
    }

    // MARK: Invoices

    func invoicesPage(_ viewer: Viewer) async throws -> Response {
        let list = try await invoices.list(tenant: viewer.tenant.id).map { $0.visible(to: viewer.session.principal) }
        return try html(
            "invoices",
            InvoicesPage(
                title: "Invoices", nav: navigation(viewer, current: "/dashboard/invoices"), tenantName: viewer.tenant.name,
                empty: list.isEmpty ? "No invoices yet: the first is issued when your first billing period ends." : nil,
                hasInvoices: !list.isEmpty,
                invoices: list.map { invoice in
                    InvoicesPage.Row(
                        number: invoice.number,
                        period: InvoiceText.period(Period(start: Instant(invoice.periodStart), end: Instant(invoice.periodEnd))),
                        status: invoice.status, stripe: invoice.stripe.map { $0.invoiceStatus ?? $0.status },
                        total: InvoiceDocument.money(invoice.totalCents, currency: invoice.currency),
                        pdf: viewer.link("/dashboard/invoices/\(invoice.id.lowercasedText).pdf"))
                }))
    }

    func invoicePDF(_ viewer: Viewer) async throws -> Response {
        let file = viewer.request.uri.path.split(separator: "/").last.map(String.init) ?? ""
        guard file.hasSuffix(".pdf"), let id = UUID(uuidString: String(file.dropLast(4))),
            let invoice = try await invoices.invoice(id: id), invoice.tenantID == viewer.tenant.id
        else { throw APIError.notFound("invoice") }
        return try InvoiceRoutes.pdf(invoice, tenant: viewer.tenant, seller: seller)
    }

    // MARK: Alerts

    func alertsPage(_ viewer: Viewer) async throws -> Response {
        try await renderAlerts(viewer, error: nil, status: .ok)
    }

    func renderAlerts(_ viewer: Viewer, error: String?, status: HTTPResponse.Status) async throws -> Response {
        let list = try await alerts.list(tenant: viewer.tenant.id)
        return try html(
            "alerts",
            AlertsPage(
                title: "Alerts", nav: navigation(viewer, current: "/dashboard/alerts"), tenantName: viewer.tenant.name, error: error,
                empty: list.isEmpty ? "No alerts yet. Add one below to hear about usage before the invoice does." : nil,
                hasAlerts: !list.isEmpty, csrf: viewer.session.csrfToken, addAction: viewer.link("/dashboard/alerts"),
                alerts: list.map { alert in
                    AlertsPage.Row(
                        id: alert.id.lowercasedText, metric: alert.metric, rule: Self.rule(alert), channels: alert.channels.joined(separator: ", "),
                        deleteAction: viewer.link("/dashboard/alerts/\(alert.id.lowercasedText)/delete"), csrf: viewer.session.csrfToken)
                }),
            status: status)
    }

    static func rule(_ alert: UsageAlert) -> String {
        switch alert.kind {
        case "threshold": "value reaches \(InvoiceText.grouped(alert.thresholdValue ?? "?"))"
        case "quota": "\(alert.thresholdPercentage ?? "?") % of the quota is used"
        default: "the last hour is far above the usual hourly usage"
        }
    }

    func addAlert(_ viewer: Viewer, _ fields: [String: String]) async throws -> Response {
        func given(_ name: String) -> String? { fields[name].flatMap { $0.isEmpty ? nil : $0 } }
        let kind = given("kind") ?? "threshold"
        do {
            let alert = try NewUsageAlert(
                tenantID: viewer.tenant.id, metric: given("metric") ?? "", kind: kind,
                thresholdValue: kind == "threshold" ? given("threshold_value") : nil,
                thresholdPercentage: kind == "quota" ? given("threshold_percentage") : nil, channels: [given("channel") ?? "email"])
            guard let created = try await alerts.create(alert) else {
                return try await renderAlerts(
                    viewer, error: "You have \(AlertStore.maxPerTenant) alerts, the most a tenant may have; remove one first.", status: .conflict)
            }
            viewer.logger.info("alert created", metadata: ["alert.id": "\(created.id)", "via": "dashboard"])
        } catch let error as AlertValidationError {
            return try await renderAlerts(viewer, error: "\(Self.fieldLabel(error.field)) \(error.message)", status: .badRequest)
        }
        return redirect(to: viewer.link("/dashboard/alerts"))
    }

    static func fieldLabel(_ field: String) -> String {
        switch field {
        case "threshold_value": "Threshold value"
        case "threshold_percentage": "Percent of quota"
        case "channels", "channels[0]": "Channel"
        default: field.prefix(1).uppercased() + field.dropFirst()
        }
    }

    func removeAlert(_ viewer: Viewer, _ fields: [String: String]) async throws -> Response {
        let id = viewer.request.uri.path.split(separator: "/").dropLast().last.flatMap { UUID(uuidString: String($0)) }
        guard let id, let alert = try await alerts.alert(id: id), alert.tenantID == viewer.tenant.id,
            try await alerts.delete(id: id, tenant: viewer.tenant.id)
        else { throw APIError.notFound("alert") }
        viewer.logger.info("alert deleted", metadata: ["alert.id": "\(id)", "via": "dashboard"])
        return redirect(to: viewer.link("/dashboard/alerts"))
    }

    // MARK: Webhook endpoints

    func webhooksPage(_ viewer: Viewer) async throws -> Response {
        try await renderWebhooks(viewer, error: nil, secret: nil, status: .ok)
    }

    func renderWebhooks(_ viewer: Viewer, error: String?, secret: String?, status: HTTPResponse.Status) async throws -> Response {
        let list = try await endpoints.store.list(tenant: viewer.tenant.id)
        return try html(
            "webhooks",
            WebhooksPage(
                title: "Webhook endpoints", nav: navigation(viewer, current: "/dashboard/webhooks"), tenantName: viewer.tenant.name,
                error: error, secret: secret,
                empty: list.isEmpty ? "No webhook endpoints. Add one to receive signed billing events (invoices, alerts, quota)." : nil,
                hasEndpoints: !list.isEmpty, csrf: viewer.session.csrfToken, addAction: viewer.link("/dashboard/webhooks"),
                endpoints: list.map { endpoint in
                    WebhooksPage.Row(
                        url: endpoint.url, events: endpoint.events.joined(separator: ", "), active: endpoint.active ? "yes" : "no",
                        deleteAction: viewer.link("/dashboard/webhooks/\(endpoint.id.lowercasedText)/delete"), csrf: viewer.session.csrfToken)
                }),
            status: status)
    }

    func addEndpoint(_ viewer: Viewer, _ fields: [String: String]) async throws -> Response {
        let description = fields["description"].flatMap { $0.isEmpty ? nil : $0 }
        do {
            let (endpoint, secret) = try await endpoints.create(
                tenant: viewer.tenant.id, url: fields["url"], events: nil, description: description)
            viewer.logger.info("webhook endpoint created", metadata: ["endpoint.id": "\(endpoint.id)", "via": "dashboard"])
            return try await renderWebhooks(viewer, error: nil, secret: secret.value, status: .created)
        } catch let error as APIError where error.status == .badRequest || error.status == .conflict {
            let field = error.field.map { $0 == "url" ? "URL" : Self.fieldLabel($0) }
            return try await renderWebhooks(
                viewer, error: [field, error.message].compactMap { $0 }.joined(separator: " "), secret: nil, status: error.status)
        }
    }

    func removeEndpoint(_ viewer: Viewer, _ fields: [String: String]) async throws -> Response {
        let id = viewer.request.uri.path.split(separator: "/").dropLast().last.flatMap { UUID(uuidString: String($0)) }
        guard let id, try await endpoints.store.delete(id: id, tenant: viewer.tenant.id) else { throw APIError.notFound("webhook endpoint") }
        viewer.logger.info("webhook endpoint deleted", metadata: ["endpoint.id": "\(id)", "via": "dashboard"])
        return redirect(to: viewer.link("/dashboard/webhooks"))
    }

    // MARK: Finance: every tenant

    /// The admin's page: tenants with a subscription open now and their charge so far (the
    /// open period's invoice total, tax included), sorted by name or by charge, 50 a page.
    /// Charges are computed for up to `financeTenantLimit` tenants, 2,000 per statement batch.
    @Sendable func tenantsPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard let (session, _) = try await viewer(request) else { return redirect(to: "/dashboard/sign-in") }
        guard session.principal == .admin else { return try errorPage(APIError.notFound("page"), session: session) }
        let now = TallyClock.now()
        let (count, open) = try await tenants.withOpenSubscriptions(at: now, limit: Self.financeTenantLimit)
        var charges: [UUID: UsageStatement.Charge] = [:]
        for start in stride(from: 0, to: open.count, by: 2_000) {
            let batch = open[start..<min(open.count, start + 2_000)].map(\.id)
            charges.merge(
                try await pool.withTransaction(isolation: .repeatableRead) { try UsageStatement.charges(of: batch, asOf: Instant(now), on: $0) },
                uniquingKeysWith: { first, _ in first })
        }
        let byCharge = request.uri.queryParameters.get("sort") == "charge"
        let rows = open.filter { charges[$0.id] != nil }.sorted { first, second in
            // A charge too large to price sorts first: it is the one finance must look at.
            let (a, b) = (charges[first.id].map { $0.total?.value ?? .max } ?? 0, charges[second.id].map { $0.total?.value ?? .max } ?? 0)
            if byCharge, a != b { return b < a }
            return first.name.localizedStandardCompare(second.name) == .orderedAscending
        }
        let pageSize = 50
        let pages = max(1, (rows.count + pageSize - 1) / pageSize)
        let page = min(pages, max(1, Int(request.uri.queryParameters.get("page") ?? "") ?? 1))
        let sort = byCharge ? "charge" : "name"
        let shown = rows.dropFirst((page - 1) * pageSize).prefix(pageSize)
        let links = [Navigation.Link(href: "/dashboard/tenants", label: "All tenants", current: true)]
        return try html(
            "tenants",
            TenantsPage(
                title: "Tenants", nav: Navigation(links: links, csrf: session.csrfToken), tenantName: nil, count: count,
                truncated: count > open.count, shown: open.count,
                empty: rows.isEmpty ? "No tenant has a subscription open now." : nil,
                sortByName: "/dashboard/tenants?sort=name", sortByCharge: "/dashboard/tenants?sort=charge",
                pageLabel: "Page \(page) of \(pages)",
                previous: page > 1 ? "/dashboard/tenants?sort=\(sort)&page=\(page - 1)" : nil,
                next: page < pages ? "/dashboard/tenants?sort=\(sort)&page=\(page + 1)" : nil,
                rows: shown.map { tenant in
                    let charge = charges[tenant.id]
                    return TenantsPage.Row(
                        name: tenant.name, href: "/dashboard/usage?tenant=\(tenant.id.lowercasedText)", plan: charge?.plan.name ?? "—",
                        period: charge.map { $0.kind == .trial ? "trial" : InvoiceText.period($0.period) } ?? "—",
                        charge: charge.map { $0.total == nil } == true
                            ? "beyond 64-bit cents: check its usage"
                            : InvoiceDocument.money(charge?.total?.value ?? 0, currency: charge?.plan.currency ?? "usd"))
                }))
    }

    /// The most tenants finance's page computes charges for (the newest with an open subscription).
    static let financeTenantLimit = 20_000
}

// MARK: Page models (read by the templates by property name)

struct UsagePage {
    struct Card {
        let metric: String
        let value: String
        let quota: String?
        let unlimited: Bool
        let level: String?
        let percent: Int?
        let barWidth: Int
        let enforcement: String?
        let change: String?
        let charge: String?

        init(_ standing: MetricStanding, previous: [String: Quantity]?, currency: String) {
            metric = standing.metric
            value = InvoiceText.grouped(standing.value.description)
            unlimited = standing.isUnlimited && standing.quota != nil
            quota = standing.isUnlimited ? nil : standing.quota.map { InvoiceText.grouped($0.description) }
            level = standing.level?.rawValue
            percent = standing.percent
            barWidth = min(100, max(standing.percent ?? 0, standing.value > .zero ? 1 : 0))
            enforcement = standing.enforcement.flatMap { standing.quota == nil || standing.isUnlimited ? nil : $0.rawValue }
            change = previous.flatMap { Self.change(from: $0[standing.metric] ?? .zero, to: standing.value) }
            charge = standing.charge > .zero ? InvoiceDocument.money(standing.charge.value, currency: currency) : nil
        }

        /// "+12 % vs. the previous period at this point" (whole percent, toward zero; the
        /// previous period counted as far into it as this one is); nil when both are zero.
        static func change(from previous: Quantity, to current: Quantity) -> String? {
            guard previous > .zero else { return current > .zero ? "new since the previous period" : nil }
            let percent = (current.scaled - previous.scaled) * 100 / previous.scaled
            return "\(percent >= 0 ? "+" : "−")\(percent.magnitude) % vs. the previous period at this point"
        }
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let periodLabel: String
    let periodKind: String
    let plan: String?
    let empty: String?
    let cards: [Card]
}

struct TrendPage {
    struct RangeLink {
        let href: String
        let label: String
        let current: Bool
    }

    struct Row {
        let label: String
        let values: [String]
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let ranges: [RangeLink]
    let rangeLabel: String
    let granularity: String
    let empty: String?
    let svg: String
    let metrics: [String]
    let rows: [Row]
}

struct UpcomingPage {
    struct Line {
        let description: String
        let quantity: String
        let unitPrice: String
        let amount: String
    }

    struct Invoice {
        let periodLabel: String
        let plan: String
        let asOf: String
        let lines: [Line]
        let subtotal: String
        let taxRate: String
        let tax: String
        let total: String
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let empty: String?
    let invoice: Invoice?
}

struct InvoicesPage {
    struct Row {
        let number: String
        let period: String
        let status: String
        let stripe: String?
        let total: String
        let pdf: String
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let empty: String?
    let hasInvoices: Bool
    let invoices: [Row]
}

struct AlertsPage {
    struct Row {
        let id: String
        let metric: String
        let rule: String
        let channels: String
        let deleteAction: String
        let csrf: String
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let error: String?
    let empty: String?
    let hasAlerts: Bool
    let csrf: String
    let addAction: String
    let alerts: [Row]
    /// The add form's own key: sent again (a reload, a second click), it is answered as
    /// the first time, not done twice (`DashboardRoutes.form`).
    let formKey = UUID().uuidString.lowercased()
}

struct WebhooksPage {
    struct Row {
        let url: String
        let events: String
        let active: String
        let deleteAction: String
        let csrf: String
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let error: String?
    let secret: String?
    let empty: String?
    let hasEndpoints: Bool
    let csrf: String
    let addAction: String
    let endpoints: [Row]
    /// The add form's own key: sent again (a reload, a second click), it is answered as
    /// the first time, not done twice (`DashboardRoutes.form`).
    let formKey = UUID().uuidString.lowercased()
}

struct TenantsPage {
    struct Row {
        let name: String
        let href: String
        let plan: String
        let period: String
        let charge: String
    }

    let title: String
    let nav: Navigation?
    let tenantName: String?
    let count: Int
    let truncated: Bool
    let shown: Int
    let empty: String?
    let sortByName: String
    let sortByCharge: String
    let pageLabel: String
    let previous: String?
    let next: String?
    let rows: [Row]
}
