import ArgumentParser
import CurlClient
import Foundation
import PostgresClient

/// Issue 14's benchmark: the dashboard's pages and `GET /v1/usage/history` for a tenant
/// with six months of hourly rollups across four metrics, timed at the client over
/// loopback against a release `billing-api`, beside the bare SQL that reads the same
/// rollups (the floor any page over them has to pay).
struct DashboardBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Dashboard page and usage-history times for a tenant with 6 months of hourly rollups, beside the bare SQL of the same rollups.")
    @Option(help: "The Billing API to measure (a release build; default TALLY_API_URL).") var api: String?
    @Option(help: "Requests per page measured (after 3 warm-up requests).") var requests = 40
    @Option(help: "Tenants with an open subscription added for finance's page (deleted afterwards).") var financeTenants = 5_000

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = environment["DATABASE_URL"], let admin = environment["BILLING_ADMIN_TOKEN"],
            let api = api ?? environment["TALLY_API_URL"]
        else { throw ValidationError("DATABASE_URL, BILLING_ADMIN_TOKEN and TALLY_API_URL must be set: run through ./ops/local.sh bench") }
        let http = try HTTPClient()
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: url), size: 1, logger: BenchSupport.logger)

        // A professional tenant since seven months ago, with an hourly rollup of each of four
        // metrics for every hour of the last six months (4 × ~4,400 rows).
        let created = try await http.send(
            .init(
                method: .post, url: "\(api)/v1/tenants", headers: ["Authorization": "Bearer \(admin)", "Content-Type": "application/json"],
                body: Data(#"{"name": "Dashboard bench", "billing_email": "bench@tally.localhost"}"#.utf8)))
        guard created.status == 201, let tenant = try JSONSerialization.jsonObject(with: created.body) as? [String: Any],
            let tenantID = tenant["id"] as? String, let key = tenant["api_key"] as? String
        else { throw ValidationError("could not create the benchmark's tenant: HTTP \(created.status)") }
        let start = Calendar(identifier: .gregorian).date(byAdding: .month, value: -7, to: Date())!
        let subscribed = try await http.send(
            .init(
                method: .post, url: "\(api)/v1/subscriptions", headers: ["Authorization": "Bearer \(admin)", "Content-Type": "application/json"],
                body: Data(#"{"tenant_id": "\#(tenantID)", "plan": "professional", "start": "\#(start.ISO8601Format())"}"#.utf8)))
        guard subscribed.status == 201 else { throw ValidationError("could not subscribe the benchmark's tenant: HTTP \(subscribed.status)") }
        let rows = try await pool.query(
            """
            INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
            SELECT $1, metric, hour, (random() * 100)::numeric(12, 4), 1 + (random() * 50)::int, (random() * 10)::numeric(12, 4)
              FROM unnest(ARRAY['api_calls', 'estimates', 'documents', 'users']) AS metric,
                   generate_series(date_trunc('hour', now() - interval '6 months'), date_trunc('hour', now()) - interval '1 hour',
                                   interval '1 hour') AS hour
            """, [UUID(uuidString: tenantID)!]
        ).affectedRows

        let session = try await Self.signIn(http: http, api: api, key: key)

        print("dashboard: a tenant with \(rows) hourly rollups (4 metrics, 6 months); \(requests) requests each, median and p95 at the client")
        let pages = [
            ("usage page", "/dashboard/usage", ["Cookie": "tally_session=\(session)"]),
            ("trend page, last 6 months", "/dashboard/trend?range=last_6_months", ["Cookie": "tally_session=\(session)"]),
            ("upcoming page", "/dashboard/upcoming", ["Cookie": "tally_session=\(session)"]),
            ("GET /v1/usage/history 6 months by day", "/v1/usage/history?range=last_6_months&granularity=day", ["Authorization": "Bearer \(key)"]),
            ("GET /v1/usage/history 6 months by hour", "/v1/usage/history?range=last_6_months&granularity=hour", ["Authorization": "Bearer \(key)"]),
        ]
        var medians: [String: Double] = [:]
        for (name, path, headers) in pages {
            let times = try await Self.measure(requests) {
                let response = try await http.send(.init(url: api + path, headers: HTTPClient.Headers(headers.map { ($0.key, $0.value) })))
                guard response.status == 200 else { throw ValidationError("\(path) answered HTTP \(response.status)") }
            }
            print("dashboard: \(name): \(Self.summary(times))")
            medians[name] = times[times.count / 2]
        }
        // The floor: the six months of rollups grouped by day, straight from PostgreSQL.
        for (name, unit) in [("day", "day"), ("hour", "hour")] {
            let times = try await Self.measure(requests) {
                _ = try await pool.query(
                    """
                    SELECT metric, date_trunc($2, hour AT TIME ZONE 'UTC'), sum(quantity_sum), sum(event_count), max(quantity_max)
                      FROM usage_rollups WHERE tenant_id = $1 AND hour >= now() - interval '6 months'
                     GROUP BY 1, 2
                    """, [UUID(uuidString: tenantID)!, unit])
            }
            print("dashboard: raw SQL of the same rollups by \(name): \(Self.summary(times))")
            let page = "GET /v1/usage/history 6 months by \(name)"
            BenchSupport.record(
                "dashboard", page, value: medians[page] ?? 0, unit: "ms (median)", raw: times[times.count / 2], rawLabel: "the rollups' SQL")
        }
        try await pool.query("DELETE FROM usage_rollups WHERE tenant_id = $1", [UUID(uuidString: tenantID)!])
        try await financePage(http: http, api: api, admin: admin, pool: pool)
        await pool.close()
    }

    /// Finance's page over `financeTenants` tenants with an open subscription and usage
    /// (charges computed in batches), then those tenants are deleted again.
    func financePage(http: HTTPClient, api: String, admin: String, pool: PostgresPool) async throws {
        let tag = "dashboard bench " + String(UUID().uuidString.prefix(8))
        try await pool.query(
            """
            WITH t AS (
                INSERT INTO tenants (name, billing_email, tax_rate_bps)
                SELECT $1 || ' ' || g, 'bench@tally.localhost', 725 FROM generate_series(1, $2) g RETURNING id
            ), s AS (
                INSERT INTO subscriptions (tenant_id, started_at, anchor)
                SELECT id, date_trunc('hour', now()) - interval '10 days', date_trunc('hour', now()) - interval '10 days' FROM t
                RETURNING id, tenant_id
            ), c AS (
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                SELECT id, 'starter', 1, date_trunc('hour', now()) - interval '10 days', 'start', date_trunc('hour', now()) - interval '10 days' FROM s
            )
            , r AS (
                INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
                SELECT tenant_id, 'api_calls', date_trunc('hour', now()) - interval '2 days', 900 + (random() * 400)::int, 1, 1 FROM s
                RETURNING tenant_id, quantity_sum
            ), p AS (
                -- The period's totals, as the Aggregator keeps them for every period it stores usage in.
                INSERT INTO usage_periods (tenant_id, period_start, period_end)
                SELECT tenant_id, date_trunc('hour', now()) - interval '10 days', date_trunc('hour', now()) - interval '10 days' + interval '1 month'
                  FROM s RETURNING tenant_id, period_start, period_end
            )
            INSERT INTO usage_period_totals (tenant_id, period_start, period_end, metric, quantity_sum, event_count, quantity_max)
            SELECT r.tenant_id, p.period_start, p.period_end, 'api_calls', r.quantity_sum, 1, 1 FROM r JOIN p USING (tenant_id)
            """, [tag, financeTenants])
        let session = try await Self.signIn(http: http, api: api, key: admin)
        let times = try await Self.measure(5) {
            let response = try await http.send(.init(url: "\(api)/dashboard/tenants?sort=charge", headers: ["Cookie": "tally_session=\(session)"]))
            guard response.status == 200 else { throw ValidationError("/dashboard/tenants answered HTTP \(response.status)") }
        }
        print("dashboard: finance's tenant page sorted by charge, \(financeTenants) more tenants with an open subscription: \(Self.summary(times))")
        BenchSupport.record("dashboard", "finance's tenant page", value: times[times.count / 2], unit: "ms (median)")
        try await pool.query(
            """
            WITH t AS (SELECT id FROM tenants WHERE name LIKE $1 || ' %'), s AS (SELECT id FROM subscriptions WHERE tenant_id IN (SELECT id FROM t)),
                 c AS (DELETE FROM subscription_plan_changes WHERE subscription_id IN (SELECT id FROM s)),
                 r AS (DELETE FROM usage_rollups WHERE tenant_id IN (SELECT id FROM t)),
                 o AS (DELETE FROM usage_period_totals WHERE tenant_id IN (SELECT id FROM t)),
                 p AS (DELETE FROM usage_periods WHERE tenant_id IN (SELECT id FROM t))
            SELECT 1
            """, [tag])
        try await pool.query("DELETE FROM subscriptions WHERE tenant_id IN (SELECT id FROM tenants WHERE name LIKE $1 || ' %')", [tag])
        try await pool.query("DELETE FROM tenants WHERE name LIKE $1 || ' %'", [tag])
    }

    /// Signs in to the dashboard as a browser does (the form's token, then the post) and
    /// returns the session cookie's value.
    static func signIn(http: HTTPClient, api: String, key: String) async throws -> String {
        let form = try await http.send(.init(url: "\(api)/dashboard/sign-in"))
        guard let signInCookie = cookie("tally_sign_in", form.headers), let token = csrf(String(decoding: form.body, as: UTF8.self)) else {
            throw ValidationError("the sign-in page has no form token")
        }
        let signedIn = try await http.send(
            .init(
                method: .post, url: "\(api)/dashboard/sign-in",
                headers: ["Cookie": "tally_sign_in=\(signInCookie)", "Content-Type": "application/x-www-form-urlencoded"],
                body: Data("api_key=\(key.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? key)&csrf_token=\(token)".utf8)))
        guard let session = cookie("tally_session", signedIn.headers) else { throw ValidationError("sign-in failed: HTTP \(signedIn.status)") }
        return session
    }

    static func measure(_ count: Int, _ body: () async throws -> Void) async throws -> [Double] {
        for _ in 0..<3 { try await body() }
        var times: [Double] = []
        for _ in 0..<count {
            let started = ContinuousClock.now
            try await body()
            times.append(BenchSupport.seconds(ContinuousClock.now - started) * 1000)
        }
        return times.sorted()
    }

    static func summary(_ sorted: [Double]) -> String {
        let median = sorted[sorted.count / 2]
        let p95 = sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.95).rounded(.up)) - 1)]
        return String(format: "median %.1f ms, p95 %.1f ms", median, p95)
    }

    static func cookie(_ name: String, _ headers: HTTPClient.Headers) -> String? {
        for field in headers.values(for: "Set-Cookie") where field.hasPrefix(name + "=") {
            return String(field.dropFirst(name.count + 1).prefix { $0 != ";" })
        }
        return nil
    }

    static func csrf(_ page: String) -> String? {
        guard let range = page.range(of: #"name="csrf_token" value=""#) else { return nil }
        return String(page[range.upperBound...].prefix { $0 != "\"" })
    }
}
