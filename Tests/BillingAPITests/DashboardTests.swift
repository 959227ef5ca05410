import BillingEngine
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresClient
import TallyTestSupport
import Testing

@testable import BillingAPI
@testable import TallyStore

/// The dashboard's sessions, forms and isolation over the real PostgreSQL (the pages in a
/// real browser are `ops/browser/dashboard_test.py`).
@Suite("Dashboard: sign-in, sessions, CSRF and isolation")
struct DashboardTests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    /// A browser's view of one signed-in session: its cookie and the page's CSRF token.
    struct Browser {
        var cookie: String
        var csrf: String
    }

    static func cookie(_ name: String, in response: TestResponse) -> (value: String, attributes: String)? {
        for field in response.headers[values: .setCookie] where field.hasPrefix(name + "=") {
            let value = field.dropFirst(name.count + 1).prefix { $0 != ";" }
            return (String(value), field)
        }
        return nil
    }

    static func csrf(in page: String) -> String? {
        guard let range = page.range(of: #"name="csrf_token" value=""#) else { return nil }
        return String(page[range.upperBound...].prefix { $0 != "\"" })
    }

    static func form(_ fields: [(String, String)]) -> ByteBuffer {
        ByteBuffer(
            string: fields.map { name, value in
                "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)"
            }.joined(separator: "&"))
    }

    /// Signs in with `key` as a browser does: fetch the form (and its cookie), post it back.
    func signIn(_ client: some TestClientProtocol, key: String, replacing previous: Browser? = nil) async throws -> Browser {
        let (signInCookie, token) = try await client.execute(uri: "/dashboard/sign-in", method: .get) { response in
            (try #require(Self.cookie("tally_sign_in", in: response)).value, try #require(Self.csrf(in: String(buffer: response.body))))
        }
        let session = try await client.execute(
            uri: "/dashboard/sign-in", method: .post,
            headers: [
                .cookie: "tally_sign_in=\(signInCookie)" + (previous.map { "; tally_session=\($0.cookie)" } ?? ""),
                .contentType: "application/x-www-form-urlencoded",
            ],
            body: Self.form([("api_key", key), ("csrf_token", token)])
        ) { response in
            #expect(response.status == .seeOther)
            let cookie = try #require(Self.cookie("tally_session", in: response))
            #expect(cookie.attributes.contains("HttpOnly"))
            #expect(cookie.attributes.contains("SameSite=Strict"))
            #expect(cookie.attributes.contains("Path=/dashboard"))
            return (cookie.value, try #require(response.headers[.location]))
        }
        let page = try await client.execute(uri: session.1, method: .get, headers: [.cookie: "tally_session=\(session.0)"]) {
            String(buffer: $0.body)
        }
        return Browser(cookie: session.0, csrf: try #require(Self.csrf(in: page)))
    }

    func get(_ client: some TestClientProtocol, _ uri: String, _ browser: Browser?) async throws -> (HTTPResponse.Status, String, HTTPFields) {
        try await client.execute(uri: uri, method: .get, headers: browser.map { [.cookie: "tally_session=\($0.cookie)"] } ?? [:]) {
            ($0.status, String(buffer: $0.body), $0.headers)
        }
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ browser: Browser, _ fields: [(String, String)]) async throws -> (
        HTTPResponse.Status, String, HTTPFields
    ) {
        try await client.execute(
            uri: uri, method: .post, headers: [.cookie: "tally_session=\(browser.cookie)", .contentType: "application/x-www-form-urlencoded"],
            body: Self.form(fields)
        ) { ($0.status, String(buffer: $0.body), $0.headers) }
    }

    @Test("signing in again in the same browser ends the session it had: its cookie reads nothing more")
    func signInAgain() async throws {
        try await app().test(.router) { client in
            let (first, second) = (try await createTenant(client, name: "First Co"), try await createTenant(client, name: "Second Co"))
            let before = try await signIn(client, key: first.key)
            #expect(try await get(client, "/dashboard/usage", before).0 == .ok)
            let after = try await signIn(client, key: second.key, replacing: before)
            let (status, _, headers) = try await get(client, "/dashboard/usage", before)
            #expect(status == .seeOther)
            #expect(headers[.location] == "/dashboard/sign-in")
            let (now, page, _) = try await get(client, "/dashboard/usage", after)
            #expect(now == .ok && page.contains("Second Co"))
        }
    }

    @Test("sign-in: a wrong key is refused, a form without its token is refused; a session cookie reads pages until sign-out, then never again")
    func sessions() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, name: "Dashboard Co")
            let (status, _, headers) = try await get(client, "/dashboard/usage", nil)
            #expect(status == .seeOther)
            #expect(headers[.location] == "/dashboard/sign-in")
            // A wrong key, and a right key posted without the sign-in form's token.
            let token = try await client.execute(uri: "/dashboard/sign-in", method: .get) { response in
                (try #require(Self.cookie("tally_sign_in", in: response)).value, try #require(Self.csrf(in: String(buffer: response.body))))
            }
            for (key, csrf, expected) in [
                ("tally_" + String(repeating: "0", count: 64), token.1, HTTPResponse.Status.unauthorized), (tenant.key, "forged", .forbidden),
            ] {
                try await client.execute(
                    uri: "/dashboard/sign-in", method: .post,
                    headers: [.cookie: "tally_sign_in=\(token.0)", .contentType: "application/x-www-form-urlencoded"],
                    body: Self.form([("api_key", key), ("csrf_token", csrf)])
                ) { response in
                    #expect(response.status == expected)
                    #expect(Self.cookie("tally_session", in: response) == nil)
                }
            }
            let browser = try await signIn(client, key: tenant.key)
            let (usage, page, pageHeaders) = try await get(client, "/dashboard/usage", browser)
            #expect(usage == .ok)
            #expect(page.contains("Dashboard Co"))
            #expect(page.contains("No subscription and no usage yet this month"))
            #expect(pageHeaders[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
            let (_, upcoming, _) = try await get(client, "/dashboard/upcoming", browser)
            #expect(upcoming.contains("There is no subscription, so nothing is billed"))
            // Sign-out needs the token too; then the same cookie is refused.
            let (refused, _, _) = try await post(client, "/dashboard/sign-out", browser, [("csrf_token", "nope")])
            #expect(refused == .forbidden)
            let (signedOut, _, _) = try await post(client, "/dashboard/sign-out", browser, [("csrf_token", browser.csrf)])
            #expect(signedOut == .seeOther)
            let (after, _, afterHeaders) = try await get(client, "/dashboard/usage", browser)
            #expect(after == .seeOther)
            #expect(afterHeaders[.location] == "/dashboard/sign-in")
            // The bearer API is unaffected by the dashboard's cookie, and the other way round.
            try await client.execute(uri: "/v1/usage", method: .get, headers: [.cookie: "tally_session=\(browser.cookie)"]) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test("a tenant on a euro plan sees its upcoming charges in euros")
    func upcomingInPlanCurrency() async throws {
        try await app().test(.router) { client in
            let code = "test-dash-eur-\(UUID().uuidString.prefix(8).lowercased())"
            try await client.execute(
                uri: "/v1/plans", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"code": "\#(code)", "name": "Euro plan", "currency": "eur", "base_cents": 4900, "charges": []}"#)
            ) { #expect($0.status == .created) }
            let tenant = try await createTenant(client, name: "Euro Co")
            let start = Date.ISO8601FormatStyle().format(TestClock.now().addingTimeInterval(-2 * 86_400))
            try await client.execute(
                uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id)", "plan": "\#(code)", "start": "\#(start)"}"#)
            ) { #expect($0.status == .created) }
            let browser = try await signIn(client, key: tenant.key)
            let (status, page, _) = try await get(client, "/dashboard/upcoming", browser)
            #expect(status == .ok)
            #expect(page.contains("€49.00") && !page.contains("$49.00"), "\(page)")
        }
    }

    @Test("a session ends when the key it signed in with is revoked")
    func revokedKey() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, name: "Revoked Co")
            let browser = try await signIn(client, key: tenant.key)
            #expect(try await get(client, "/dashboard/usage", browser).0 == .ok)
            try await client.execute(
                uri: "/v1/tenants/\(tenant.id)/api-keys", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"revoke_others": true}"#)
            ) { response in #expect(response.status == .created) }
            #expect(try await get(client, "/dashboard/usage", browser).0 == .seeOther)
        }
    }

    @Test("forms: an alert added through the form is in GET /v1/alerts and removed by the form; a post without the session's token changes nothing")
    func alertForms() async throws {
        try await app(allowPrivateWebhooks: true).test(.router) { client in
            let tenant = try await createTenant(client, name: "Alerting Co")
            let browser = try await signIn(client, key: tenant.key)
            let fields = [("metric", "api_calls"), ("kind", "quota"), ("threshold_percentage", "80"), ("channel", "email")]
            let (forged, _, _) = try await post(client, "/dashboard/alerts", browser, fields)
            #expect(forged == .forbidden)
            let (added, _, _) = try await post(client, "/dashboard/alerts", browser, fields + [("csrf_token", browser.csrf)])
            #expect(added == .seeOther)
            let alerts = try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(tenant.key)) { response in
                try #require(try json(response)["data"] as? [[String: Any]])
            }
            #expect(alerts.count == 1)
            #expect(alerts.first?["threshold_percentage"] as? String == "80")
            let id = try #require(alerts.first?["id"] as? String)
            let (invalid, page, _) = try await post(
                client, "/dashboard/alerts", browser,
                [("metric", "API CALLS"), ("kind", "threshold"), ("threshold_value", "5"), ("csrf_token", browser.csrf)])
            #expect(invalid == .badRequest)
            #expect(page.contains("Metric must be a metric name"))
            let (removed, _, _) = try await post(client, "/dashboard/alerts/\(id)/delete", browser, [("csrf_token", browser.csrf)])
            #expect(removed == .seeOther)
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [[String: Any]]
                #expect(data?.isEmpty == true)
            }
            // A webhook endpoint added by form: its secret shown once, the endpoint in the API.
            let (created, endpointPage, _) = try await post(
                client, "/dashboard/webhooks", browser, [("url", "http://127.0.0.1:9/hook"), ("description", "form"), ("csrf_token", browser.csrf)])
            #expect(created == .created)
            #expect(endpointPage.contains("shown this once: <code>whsec_"))
            let (refused, refusedPage, _) = try await post(
                client, "/dashboard/webhooks", browser, [("url", "ftp://x"), ("csrf_token", browser.csrf)])
            #expect(refused == .badRequest && refusedPage.contains("URL "))
            // A NUL in a field (%00) is refused, not stored cut short at it ("a" was kept).
            let (cut, _, _) = try await post(
                client, "/dashboard/webhooks", browser,
                [("url", "http://127.0.0.1:9/other"), ("description", "a\u{0}b"), ("csrf_token", browser.csrf)])
            #expect(cut == .badRequest)
            try await client.execute(uri: "/v1/webhook-endpoints", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [[String: Any]]
                #expect(data?.map { $0["url"] as? String } == ["http://127.0.0.1:9/hook"])
            }
        }
    }

    @Test("an add form sent twice (a reload of its answer, a second click) adds once and answers as the first time")
    func formsSentTwice() async throws {
        try await app(allowPrivateWebhooks: true).test(.router) { client in
            let tenant = try await createTenant(client, name: "Reloading Co")
            let browser = try await signIn(client, key: tenant.key)
            func formKey(_ page: String) throws -> String {
                let range = try #require(page.range(of: #"name="form_key" value=""#))
                return String(page[range.upperBound...].prefix { $0 != "\"" })
            }
            // The endpoint form's answer is the page with the secret: a reload posts it again.
            let key = try formKey(try await get(client, "/dashboard/webhooks", browser).1)
            let fields = [("url", "http://127.0.0.1:9/reload"), ("csrf_token", browser.csrf), ("form_key", key)]
            let (first, firstPage, _) = try await post(client, "/dashboard/webhooks", browser, fields)
            let (again, againPage, headers) = try await post(client, "/dashboard/webhooks", browser, fields)
            #expect(first == .created && again == .created)
            #expect(firstPage.contains("shown this once: <code>whsec_"))
            #expect(againPage == firstPage)
            #expect(headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
            #expect(headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            // The same key with other values is refused, not run.
            let (other, _, _) = try await post(
                client, "/dashboard/webhooks", browser, [("url", "http://127.0.0.1:9/other"), ("csrf_token", browser.csrf), ("form_key", key)])
            #expect(other == .conflict)
            try await client.execute(uri: "/v1/webhook-endpoints", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [[String: Any]]
                #expect(data?.map { $0["url"] as? String } == ["http://127.0.0.1:9/reload"])
            }
            // The alert form redirects; sent twice, one alert, the same redirect.
            let alertKey = try formKey(try await get(client, "/dashboard/alerts", browser).1)
            let alert = [("metric", "api_calls"), ("kind", "anomaly"), ("channel", "email"), ("csrf_token", browser.csrf), ("form_key", alertKey)]
            let (added, _, addedHeaders) = try await post(client, "/dashboard/alerts", browser, alert)
            let (twice, _, twiceHeaders) = try await post(client, "/dashboard/alerts", browser, alert)
            #expect(added == .seeOther && twice == .seeOther)
            #expect(twiceHeaders[.location] == addedHeaders[.location])
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [Any]
                #expect(data?.count == 1)
            }
        }
    }

    @Test("cookies are Secure behind a TLS proxy (X-Forwarded-Proto: https), and not on plain HTTP")
    func secureCookies() async throws {
        try await app().test(.router) { client in
            for (proto, secure) in [("https", true), ("http", false)] {
                try await client.execute(uri: "/dashboard/sign-in", method: .get, headers: [HTTPField.Name("X-Forwarded-Proto")!: proto]) {
                    response in
                    let cookie = try #require(Self.cookie("tally_sign_in", in: response))
                    #expect(cookie.attributes.contains("Secure") == secure, "\(proto)")
                    #expect(cookie.attributes.contains("SameSite=Strict"))
                }
            }
        }
    }

    @Test("finance's tenant page: a tenant's charge so far is its upcoming invoice's total; sorted by charge, largest first")
    func financePage() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            // A name that sorts first, so the tenant is on the first page by name.
            let tenant = try await createTenant(client, name: "!!! Finance \(UUID().uuidString.prefix(8))", taxRateBps: 725)
            let subscription = try await client.execute(
                uri: "/v1/subscriptions", method: .post, headers: bearer(adminToken),
                body: ByteBuffer(string: #"{"tenant_id": "\#(tenant.id)", "plan": "starter"}"#)
            ) { try #require(try json($0)["id"] as? String) }
            try await withCleanup(
                {
                    let total = try await client.execute(
                        uri: "/v1/invoices/upcoming?tenant_id=\(tenant.id)", method: .get, headers: bearer(adminToken)
                    ) {
                        try #require(try json($0)["total_cents"] as? Int)
                    }
                    let admin = try await signIn(client, key: adminToken)
                    let (byName, namePage, _) = try await get(client, "/dashboard/tenants?sort=name", admin)
                    #expect(byName == .ok)
                    #expect(namePage.contains("Page 1 of"))
                    let ours = try #require(Self.rows(namePage).first { $0.id == tenant.id })
                    #expect(ours.charge == Self.dollars(total))
                    let (byCharge, chargePage, _) = try await get(client, "/dashboard/tenants?sort=charge", admin)
                    #expect(byCharge == .ok)
                    let charges = Self.rows(chargePage).map { Self.cents($0.charge) }
                    #expect(!charges.isEmpty)
                    #expect(charges == charges.sorted(by: >))
                },
                cleanup: {
                    // Not open any more: later runs' pages do not list it.
                    try await pool.query("DELETE FROM subscription_plan_changes WHERE subscription_id = $1", [UUID(uuidString: subscription)!])
                    try await pool.query("DELETE FROM subscriptions WHERE id = $1", [UUID(uuidString: subscription)!])
                })
        }
        await pool.close()
    }

    /// The finance page's rows: tenant id and charge text.
    static func rows(_ page: String) -> [(id: String, charge: String)] {
        page.matches(
            of:
                #/<tr><td><a href="/dashboard/usage\?tenant=([0-9a-f-]{36})">[^<]*</a></td><td>[^<]*</td><td>[^<]*</td><td class="num">([^<]*)</td></tr>/#
        )
        .map { (String($0.output.1), String($0.output.2)) }
    }

    static func dollars(_ cents: Int) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.minimumFractionDigits = 2
        formatter.maximumFractionDigits = 2
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.usesGroupingSeparator = true
        formatter.groupingSeparator = ","
        formatter.groupingSize = 3
        return "$" + (formatter.string(from: NSNumber(value: Double(cents) / 100)) ?? "")
    }

    /// A charge cell in cents; one too large to price (a runaway meter, as LargeTotalTests
    /// makes one while this suite may run) sorts above every amount.
    static func cents(_ dollars: String) -> Int {
        dollars.hasPrefix("beyond 64-bit cents") ? .max : Int(dollars.filter(\.isNumber)) ?? -1
    }

    @Test("the trend chart holds every legend row (ten metrics), dashes colours that come round again, and draws a lone bucket as a point")
    func trendChartLayout() throws {
        let day = Instant(microsecondsSinceEpoch: 86_400_000_000 * 20_000)
        func history(buckets: Int, metrics: Int) -> UsageHistory {
            UsageHistory(
                buckets: (0..<buckets).map { day.advanced(byMicroseconds: Int64($0) * 86_400_000_000) }, granularity: .day,
                series: (0..<metrics).map {
                    UsageHistory.Series(metric: "m\($0)", aggregation: .sum, values: Array(repeating: Quantity(units: 5), count: buckets))
                })
        }
        let svg = TrendChart(history: history(buckets: 7, metrics: 10), units: [:]).svg
        let viewBox = try #require(svg.firstRange(of: #/viewBox="0 0 720 (\d+)"/#).flatMap { Double(svg[$0].split(separator: " ").last!.dropLast()) })
        let legend = svg.matches(of: #/<text x="[0-9.]+" y="([0-9.]+)" font-size="11" fill="rgb\(29,36,48\)">/#).compactMap { Double($0.output.1) }
        #expect(legend.count == 10)
        #expect(legend.allSatisfy { $0 < viewBox }, "\(legend) in \(viewBox)")
        #expect(svg.matches(of: #/stroke-dasharray/#).count == 2)
        #expect(!svg.contains("<circle"))
        // Three metrics or fewer: the chart keeps its size.
        #expect(TrendChart(history: history(buckets: 7, metrics: 3), units: [:]).svg.contains(#"viewBox="0 0 720 300""#))
        let lone = TrendChart(history: history(buckets: 1, metrics: 2), units: [:]).svg
        #expect(lone.matches(of: #/<circle /#).count == 2)
    }

    @Test("a card's change versus the previous period: whole percent toward zero, new usage, nothing")
    func changeVersusPrevious() {
        #expect(UsagePage.Card.change(from: Quantity(units: 100), to: Quantity(units: 150)) == "+50 % vs. the previous period at this point")
        #expect(UsagePage.Card.change(from: Quantity(units: 300), to: Quantity(scaled: 1_999_999)) == "−33 % vs. the previous period at this point")
        #expect(UsagePage.Card.change(from: .zero, to: Quantity(units: 1)) == "new since the previous period")
        #expect(UsagePage.Card.change(from: .zero, to: .zero) == nil)
    }

    @Test("a tenant's name cannot carry markup into a page, whatever marks are joined to its < > \" & (escaped scalar by scalar)")
    func markupInNames() async throws {
        // As JSON: a prepended mark before `<` and after the tag's end, a combining accent after
        // `"` and `&`, a zero-width joiner after `<` — each makes one grapheme cluster of the pair.
        let name = #"Mallory \u0600<meta http-equiv=refresh content=0;url=http://127.0.0.1:9/x\u0600> q\"\u0301 &\u0301amp; <\u200Db>"#
        // What must not reach a page raw; the name escaped must.
        let raw = ["<meta http-equiv", "\u{0600}>", "\"\u{0301}", "&\u{0301}", "<\u{200D}b"]
        let escaped = "Mallory \u{0600}&lt;meta http-equiv=refresh"
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, name: name)
            let browser = try await signIn(client, key: tenant.key)
            for page in ["usage", "alerts", "upcoming"] {
                let (status, body, headers) = try await get(client, "/dashboard/\(page)", browser)
                #expect(status == .ok, "\(page)")
                #expect(Self.holds(body, escaped), "\(page)")
                #expect(raw.filter { Self.holds(body, $0) }.isEmpty, "\(page)")
                #expect(headers[.contentSecurityPolicy]?.contains("base-uri 'none'") == true)
            }
        }
    }

    /// Whether `page` holds `text`, byte for byte (String's `contains` compares grapheme clusters).
    static func holds(_ page: String, _ text: String) -> Bool { Array(page.utf8).firstRange(of: Array(text.utf8)) != nil }

    @Test("isolation: tenant A's session gets 404 for B's pages, invoice PDFs, alerts and endpoints, whatever ids it names")
    func isolation() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app(allowPrivateWebhooks: true).test(.router) { client in
            let a = try await createTenant(client, name: "Tenant A")
            let b = try await createTenant(client, name: "Tenant B")
            let alertID = try await client.execute(
                uri: "/v1/alerts", method: .post, headers: bearer(b.key),
                body: ByteBuffer(string: #"{"metric": "api_calls", "kind": "threshold", "threshold_value": "10", "channels": ["email"]}"#)
            ) { try #require(try json($0)["id"] as? String) }
            let endpointID = try await client.execute(
                uri: "/v1/webhook-endpoints", method: .post, headers: bearer(b.key), body: ByteBuffer(string: #"{"url": "http://127.0.0.1:9/hook"}"#)
            ) { try #require(try json($0)["id"] as? String) }
            let invoiceID = UUID()
            try await pool.query(
                """
                INSERT INTO invoices (id, tenant_id, number, period_start, period_end, subtotal_cents, tax_rate_bps, tax_cents,
                                      total_cents, issued_at, due_at, as_of)
                VALUES ($1, $2, $3, now() - interval '30 days', now(), 100, 0, 0, 100, now(), now() + interval '30 days', now())
                """, [invoiceID, UUID(uuidString: b.id)!, "INV-2098-\(Int.random(in: 100_000...999_999))"])
            let browserA = try await signIn(client, key: a.key)
            let browserB = try await signIn(client, key: b.key)
            #expect(try await get(client, "/dashboard/invoices/\(invoiceID.uuidString.lowercased()).pdf", browserB).0 == .ok)
            for page in ["usage", "trend", "upcoming", "invoices", "alerts", "webhooks"] {
                let (status, body, _) = try await get(client, "/dashboard/\(page)?tenant=\(b.id)", browserA)
                #expect(status == .notFound, "\(page)")
                #expect(!body.contains("Tenant B"))
            }
            #expect(try await get(client, "/dashboard/invoices/\(invoiceID.uuidString.lowercased()).pdf", browserA).0 == .notFound)
            #expect(try await get(client, "/dashboard/tenants", browserA).0 == .notFound)
            let (alert, _, _) = try await post(client, "/dashboard/alerts/\(alertID)/delete", browserA, [("csrf_token", browserA.csrf)])
            #expect(alert == .notFound)
            let (endpoint, _, _) = try await post(client, "/dashboard/webhooks/\(endpointID)/delete", browserA, [("csrf_token", browserA.csrf)])
            #expect(endpoint == .notFound)
            // B's session token does not work as A's CSRF token (tokens are per session).
            let (crossed, _, _) = try await post(
                client, "/dashboard/alerts", browserA, [("metric", "api_calls"), ("kind", "anomaly"), ("csrf_token", browserB.csrf)])
            #expect(crossed == .forbidden)
            try await client.execute(uri: "/v1/alerts", method: .get, headers: bearer(b.key)) { response in
                let data = try json(response)["data"] as? [[String: Any]]
                #expect(data?.count == 1)
            }
            // The admin picks a tenant and sees it.
            let admin = try await signIn(client, key: adminToken)
            let (chosen, body, _) = try await get(client, "/dashboard/usage?tenant=\(b.id.uppercased())", admin)
            #expect(chosen == .ok)
            #expect(body.contains("Tenant B"))
            #expect(try await get(client, "/dashboard/usage", admin).2[.location] == "/dashboard/tenants")
            try await pool.query("DELETE FROM invoices WHERE id = $1", [invoiceID])
        }
        await pool.close()
    }
}
