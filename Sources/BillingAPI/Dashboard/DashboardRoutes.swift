import CivilTime
import Foundation
import HTTPTypes
import Hummingbird
import InvoicePDF
import Invoicing
import Logging
import Mustache
import NIOCore
import PostgresClient
import TallyHTTP
import TallyStore

/// `/dashboard`: server-rendered pages for tenants (their usage, trend, upcoming charges,
/// invoices, alerts and webhook endpoints) and for finance with the admin token (every
/// tenant's charge so far). Sign-in with an API key opens a session held in an HttpOnly,
/// SameSite=Strict cookie (Secure behind TLS); every form carries the session's CSRF
/// token; a tenant's session never reads another tenant (404 whatever id it names).
struct DashboardRoutes {
    static let sessionCookie = "tally_session"
    static let signInCookie = "tally_sign_in"

    let pool: PostgresPool
    let sessions: DashboardSessionStore
    /// Keys of the add forms (see `once`).
    let idempotent: IdempotentRequests
    let tenants: TenantStore
    let invoices: InvoiceStore
    let alerts: AlertStore
    let endpoints: WebhookEndpointRoutes
    let authenticator: APIKeyAuthenticator
    let adminToken: String
    let seller: InvoiceDocument.Party
    let library: MustacheLibrary
    /// Cookies get `Secure` when this is set or the request came through a TLS proxy.
    let secureCookies: Bool

    func register(on router: Router<TallyRequestContext>) {
        let dashboard = router.group("dashboard")
        dashboard.get(use: { request, _ in
            guard let (session, _) = try await viewer(request) else { return redirect(to: "/dashboard/sign-in") }
            return redirect(to: session.principal == .admin ? "/dashboard/tenants" : "/dashboard/usage")
        })
        dashboard.get("sign-in", use: signInPage)
        dashboard.post("sign-in", use: signIn)
        dashboard.post("sign-out", use: signOut)
        dashboard.get("usage", use: { try await page($0, $1, render: usagePage) })
        dashboard.get("trend", use: { try await page($0, $1, render: trendPage) })
        dashboard.get("upcoming", use: { try await page($0, $1, render: upcomingPage) })
        dashboard.get("invoices", use: { try await page($0, $1, render: invoicesPage) })
        dashboard.get("invoices/:file", use: { try await page($0, $1, render: invoicePDF) })
        dashboard.get("alerts", use: { try await page($0, $1, render: alertsPage) })
        dashboard.post("alerts", use: { try await form($0, $1, handle: addAlert) })
        dashboard.post("alerts/:alertID/delete", use: { try await form($0, $1, handle: removeAlert) })
        dashboard.get("webhooks", use: { try await page($0, $1, render: webhooksPage) })
        dashboard.post("webhooks", use: { try await form($0, $1, handle: addEndpoint) })
        dashboard.post("webhooks/:endpointID/delete", use: { try await form($0, $1, handle: removeEndpoint) })
        dashboard.get("tenants", use: tenantsPage)
    }

    // MARK: Sessions

    /// Who is signed in, from the session cookie; nil without a live session.
    func viewer(_ request: Request) async throws -> (session: DashboardSession, token: String)? {
        guard let token = request.cookies[Self.sessionCookie]?.value, !token.isEmpty,
            let session = try await sessions.session(token: token, adminToken: adminToken)
        else { return nil }
        return (session, token)
    }

    @Sendable func signInPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try renderSignIn(request, error: nil, status: .ok)
    }

    /// The sign-in form is protected by a double-submit token: a random value in a
    /// SameSite=Strict cookie that the form must post back.
    /// A second tab keeps the token the first one's form carries.
    func renderSignIn(_ request: Request, error: String?, status: HTTPResponse.Status) throws -> Response {
        let current = request.cookies[Self.signInCookie]?.value ?? ""
        let token = current.count == 64 && current.allSatisfy(\.isHexDigit) ? current : DashboardSessionStore.randomToken()
        var response = try html("sign-in", SignInPage(csrf: token, error: error), status: status)
        response.setCookie(cookie(Self.signInCookie, token, request: request, path: "/dashboard/sign-in", maxAge: 3_600))
        return response
    }

    @Sendable func signIn(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let fields = try await formFields(request, context: context)
        guard let expected = request.cookies[Self.signInCookie]?.value, Self.same(fields["csrf_token"], expected) else {
            return try renderSignIn(request, error: "The sign-in form expired; please try again.", status: .forbidden)
        }
        let key = (fields["api_key"] ?? "").trimmingCharacters(in: .whitespaces)
        let opened: (token: String, session: DashboardSession)?
        switch try await authenticator.principal(forToken: key) {
        case .admin: opened = try await sessions.signIn(adminToken: key)
        case .tenant: opened = try await sessions.signIn(tenantKey: APIKey(secret: key))
        case nil: opened = nil
        }
        guard let opened else {
            context.logger.notice(
                "dashboard sign-in refused: not a valid key", metadata: ["client.address": "\(context.clientAddress ?? "unknown")"])
            return try renderSignIn(
                request, error: "That key is not a valid Tally API key. Copy it again from where it was issued, or ask your operator.",
                status: .unauthorized)
        }
        // A session this browser had is over: signing in again (as another tenant, say) leaves
        // no second live session behind.
        if let previous = request.cookies[Self.sessionCookie]?.value, !previous.isEmpty {
            try await sessions.signOut(token: previous)
        }
        var signedIn: Logger.Metadata = ["client.address": "\(context.clientAddress ?? "unknown")"]
        switch opened.session.principal {
        case .admin: signedIn["auth.principal"] = "admin"
        case .tenant(let id): signedIn["tenant.id"] = "\(id)"
        }
        context.logger.info("dashboard sign-in", metadata: signedIn)
        var response = redirect(to: opened.session.principal == .admin ? "/dashboard/tenants" : "/dashboard/usage")
        response.setCookie(cookie(Self.sessionCookie, opened.token, request: request, path: "/dashboard", maxAge: nil))
        response.setCookie(cookie(Self.signInCookie, "", request: request, path: "/dashboard/sign-in", maxAge: 0))
        return response
    }

    @Sendable func signOut(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard let (session, token) = try await viewer(request) else { return redirect(to: "/dashboard/sign-in") }
        let fields = try await formFields(request, context: context)
        guard Self.same(fields["csrf_token"], session.csrfToken) else { return try refusedForm() }
        try await sessions.signOut(token: token)
        var response = redirect(to: "/dashboard/sign-in")
        response.setCookie(cookie(Self.sessionCookie, "", request: request, path: "/dashboard", maxAge: 0))
        return response
    }

    func cookie(_ name: String, _ value: String, request: Request, path: String, maxAge: Int?) -> Cookie {
        let secure = secureCookies || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        return Cookie(name: name, value: value, maxAge: maxAge, path: path, secure: secure, httpOnly: true, sameSite: .strict)
    }

    /// Compares a posted token with the expected one without an early exit (tokens have
    /// one length, so only a malformed one is refused sooner).
    static func same(_ given: String?, _ expected: String) -> Bool {
        guard let given, !expected.isEmpty else { return false }
        return StripeWebhookSignature.constantTimeEqual(Array(given.utf8), Array(expected.utf8))
    }

    // MARK: Pages and forms

    /// What a page is rendered for: the session, and the tenant it shows.
    struct Viewer {
        let session: DashboardSession
        let tenant: Tenant
        let request: Request
        /// The request's logger, naming who acts (the principal) on which tenant.
        let logger: Logger

        /// `path` for this tenant: the admin's links carry the tenant they look at.
        func link(_ path: String, _ query: [(String, String)] = []) -> String {
            var items = query
            if session.principal == .admin { items.insert(("tenant", tenant.id.lowercasedText), at: 0) }
            guard !items.isEmpty else { return path }
            return path + "?" + items.map { "\($0)=\(Self.encoded($1))" }.joined(separator: "&")
        }

        static func encoded(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
        }
    }

    /// Resolves the viewer (redirecting to sign-in without a session), then renders.
    func page(
        _ request: Request, _ context: TallyRequestContext, render: (Viewer) async throws -> Response
    ) async throws -> Response {
        guard let (session, _) = try await viewer(request) else { return redirect(to: "/dashboard/sign-in") }
        do {
            guard let viewer = try await resolve(session, request: request, logger: context.logger) else {
                return redirect(to: "/dashboard/tenants")
            }
            return try await render(viewer)
        } catch let error as APIError {
            return try errorPage(error, session: session)
        }
    }

    /// A form post: the session's CSRF token must come with it; then `handle` answers.
    func form(
        _ request: Request, _ context: TallyRequestContext, handle: (Viewer, [String: String]) async throws -> Response
    ) async throws -> Response {
        guard let (session, _) = try await viewer(request) else { return redirect(to: "/dashboard/sign-in") }
        let fields = try await formFields(request, context: context)
        guard Self.same(fields["csrf_token"], session.csrfToken) else { return try refusedForm() }
        do {
            guard let viewer = try await resolve(session, request: request, logger: context.logger) else {
                return redirect(to: "/dashboard/tenants")
            }
            guard let key = fields["form_key"] else { return try await handle(viewer, fields) }
            return try await once(key, fields: fields, viewer: viewer) { try await handle(viewer, fields) }
        } catch let error as APIError {
            return try errorPage(error, session: session)
        }
    }

    /// A form sent with its `form_key` (the add forms carry one, new at each rendering):
    /// sent again — a reload of the page its answer is, a second click — it gets the first
    /// answer (the new endpoint's secret once more) instead of a second alert or endpoint.
    /// The keys and answers are the API's Idempotency-Key store's, under the tenant's
    /// dashboard; a refused form keeps nothing, so it can be corrected and sent again.
    func once(_ key: String, fields: [String: String], viewer: Viewer, handle: () async throws -> Response) async throws -> Response {
        guard IdempotentRequests.isWellFormed(key) else { return try await handle() }
        let sent = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let outcome = try await idempotent.once(
            owner: "dashboard:\(viewer.tenant.id.lowercasedText)", key: key,
            fingerprint: IdempotentRequests.fingerprint(method: "POST", target: viewer.request.uri.description, body: Array(sent.utf8)),
            logger: viewer.logger, keeping: { (200..<400).contains($0.status.code) }, handle: handle)
        switch outcome {
        case .answered(let response):
            return response
        case .replayed(let answer):
            guard let location = answer.location else { return page(status: .init(code: answer.status), body: ByteBuffer(bytes: answer.body)) }
            return redirect(to: location)
        case .running, .usedForAnother:
            return try html(
                "error",
                ErrorPage(
                    title: "Already sent", heading: "This form was already sent", nav: nil, tenantName: viewer.tenant.name,
                    message: "It is being handled, or was handled with other values. Open the page again to see the result, or to send a new form."
                ), status: .conflict)
        }
    }

    /// The tenant shown: a tenant's own (naming any other is a 404), or for the admin the
    /// one `?tenant=` names (nil: none named, go pick one).
    func resolve(_ session: DashboardSession, request: Request, logger: Logger) async throws -> Viewer? {
        let named = request.uri.queryParameters.get("tenant")
        let id: UUID
        switch session.principal {
        case .tenant(let own):
            if let named, UUID(uuidString: named) != own { throw APIError.notFound("tenant") }
            id = own
        case .admin:
            guard let named else { return nil }
            guard let parsed = UUID(uuidString: named) else { throw APIError.notFound("tenant") }
            id = parsed
        }
        guard let tenant = try await tenants.tenant(id: id) else { throw APIError.notFound("tenant") }
        var logger = logger
        logger[metadataKey: "tenant.id"] = "\(tenant.id)"
        if session.principal == .admin { logger[metadataKey: "auth.principal"] = "admin" }
        return Viewer(session: session, tenant: tenant, request: request, logger: logger)
    }

    /// The posted form's fields (Hummingbird's `application/x-www-form-urlencoded` decoder);
    /// a body it cannot read has no fields, so its form is refused for want of a token.
    func formFields(_ request: Request, context: TallyRequestContext) async throws -> [String: String] {
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        let fields = (try? URLEncodedFormDecoder().decode([String: String].self, from: String(buffer: body))) ?? [:]
        // A NUL (%00) cannot be stored (a description was kept up to it): refused, as the API refuses it.
        if let (name, _) = fields.first(where: { $0.key.contains("\u{0}") || $0.value.contains("\u{0}") }) {
            throw APIError.invalid(name, "holds a NUL character")
        }
        return fields
    }

    func refusedForm() throws -> Response {
        try html(
            "error",
            ErrorPage(
                title: "Refused", heading: "This form was refused", nav: nil, tenantName: nil,
                message:
                    "It did not carry this session's security token (it may come from another site, or from a page opened before you signed in again). Reload the page and try again."
            ),
            status: .forbidden)
    }

    func errorPage(_ error: APIError, session: DashboardSession) throws -> Response {
        let heading = error.status == .notFound ? "Not found" : "Something is not right"
        let message = error.status == .notFound ? "There is nothing here for you. Check the link, or go back to the dashboard." : error.message
        return try html(
            "error", ErrorPage(title: heading, heading: heading, nav: nil, tenantName: nil, message: message), status: error.status)
    }

    func html(_ template: String, _ object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
        guard let text = library.render(object, withTemplate: template) else {
            throw APIError(.internalServerError, code: "TEMPLATE_MISSING", message: "The page template \(template) is missing.")
        }
        return page(status: status, body: ByteBuffer(string: text))
    }

    /// A rendered page with the headers every page carries.
    func page(status: HTTPResponse.Status, body: ByteBuffer) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .contentSecurityPolicy:
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
                HTTPField.Name("X-Content-Type-Options")!: "nosniff", HTTPField.Name("Referrer-Policy")!: "same-origin",
                // frame-ancestors 'none' for browsers too old for it.
                HTTPField.Name("X-Frame-Options")!: "DENY",
            ],
            body: .init(byteBuffer: body))
    }

    func redirect(to location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }
}

struct SignInPage {
    let title = "Sign in"
    let nav: Navigation? = nil
    let tenantName: String? = nil
    let csrf: String
    let error: String?
}

struct ErrorPage {
    let title: String
    let heading: String
    let nav: Navigation?
    let tenantName: String?
    let message: String
}

/// The links of the header, and the token of its sign-out form.
struct Navigation {
    struct Link {
        let href: String
        let label: String
        let current: Bool
    }

    let links: [Link]
    let csrf: String
}
