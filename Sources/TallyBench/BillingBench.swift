import ArgumentParser
import Foundation
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyOutbox
import TallyRuntime

/// SPEC §7: a billing run of 10,000 subscriptions with usage, issued by the running
/// Invoicer processes: invoices per second and total time (target: 10k in ≤ 60 s); with
/// `--plan graduated`, the same on a graduated plan of 5 tiers over 4 metrics (issue 17).
struct BillingBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "billing", abstract: "A billing run of N subscriptions with usage: invoices per second.")
    @Option(help: "Subscriptions with usage to bill (10,000 and 50,000 in ./ops/local.sh bench).") var subscriptions = 10_000
    @Option(
        name: .customLong("plan"),
        help: """
            standard: the seeded Starter plan (two metrics over their quota); graduated: a plan of this run with 5 tiers on \
            each of 4 metrics, the usage spanning 4 of them (SPEC §2.1).
            """)
    var planKind = "standard"
    @Option(help: "The invoices/s of the same run on the standard plan, printed beside this one.") var referenceRate: Double?

    func run() async throws {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"] else {
            throw ValidationError("DATABASE_URL is not set: run through ./ops/local.sh bench, or source .local/env")
        }
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: url), size: 1, logger: BenchSupport.logger)
        // Tenants on starter, one period ending two days ago (then the subscription ends, so
        // later runs find nothing of theirs), each with usage over the quota.
        let day: TimeInterval = 86_400
        let end = Date(timeIntervalSince1970: ((Date().timeIntervalSince1970 - 2 * day) / day).rounded(.down) * day)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let start = calendar.date(byAdding: .month, value: -1, to: end)!
        let tag = String(UUID().uuidString.prefix(8))
        guard ["standard", "graduated"].contains(planKind) else { throw ValidationError("--plan is standard or graduated") }
        let graduated = planKind == "graduated"
        let metrics = graduated ? ["api_calls", "documents", "estimates", "users"] : ["api_calls", "estimates"]
        var slug = "starter"
        if graduated {
            // Every metric: 0–100 free, then 0.5¢, 0.25¢, 0.1¢ with a $1 flat fee, 0.05¢ above 5,000.
            slug = "bench-graduated-\(tag.lowercased())"
            let tiers = """
                [{"up_to": "100", "unit_price": "0", "flat_cents": 0}, {"up_to": "500", "unit_price": "0.5", "flat_cents": 0},
                 {"up_to": "1000", "unit_price": "0.25", "flat_cents": 0}, {"up_to": "5000", "unit_price": "0.1", "flat_cents": 100},
                 {"up_to": null, "unit_price": "0.05", "flat_cents": 0}]
                """
            let charges =
                "["
                + metrics.map { #"{"metric": "\#($0)", "enforcement": "soft", "model": "graduated", "tiers": \#(tiers)}"# }
                .joined(separator: ", ") + "]"
            try await pool.query(
                """
                WITH code AS (INSERT INTO subscription_plans (slug) VALUES ($1) RETURNING slug)
                INSERT INTO plan_versions (plan_slug, version, name, currency, billing_interval, base_cents, charges)
                SELECT slug, 1, 'Bench graduated', 'usd', 'month', 29900, $2::jsonb FROM code
                """, [slug, charges])
        }
        try await pool.query(
            """
            WITH t AS (
                INSERT INTO tenants (name, billing_email, tax_rate_bps)
                SELECT 'billing bench ' || $1 || ' ' || g, 'bench@tally.localhost', 725 FROM generate_series(1, $4) g RETURNING id
            ), s AS (
                INSERT INTO subscriptions (tenant_id, started_at, anchor, ends_at) SELECT id, $2, $2, $3 FROM t RETURNING id, tenant_id
            ), c AS (
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                SELECT id, $5, 1, $2, 'start', $2 FROM s
            )            , r AS (
                INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max)
                SELECT tenant_id, metric, $2::timestamptz + interval '1 day', 900 + (random() * 400)::int, 1000, 1
                  FROM s, unnest($6::text[]) AS metric
                RETURNING tenant_id, metric, quantity_sum, event_count, quantity_max
            ), p AS (
                -- The period's totals, as the Aggregator keeps them for every period it stores usage in.
                INSERT INTO usage_periods (tenant_id, period_start, period_end) SELECT tenant_id, $2, $3 FROM s RETURNING tenant_id
            )
            INSERT INTO usage_period_totals (tenant_id, period_start, period_end, metric, quantity_sum, event_count, quantity_max)
            SELECT r.tenant_id, $2, $3, r.metric, r.quantity_sum, r.event_count, r.quantity_max FROM r JOIN p USING (tenant_id)
            """, [tag, start, end, subscriptions, slug, PostgresTextArray(metrics)])
        let publisher = ConfirmedPublisher(configuration: try BenchSupport.broker(), logger: BenchSupport.logger)
        let clock = ContinuousClock.now
        let plan = try await pool.withTransaction { try BillingRunPlanner.plan(asOf: end.addingTimeInterval(3600), grace: 3600, on: $0) }
        let plannedAfter = BenchSupport.seconds(ContinuousClock.now - clock)
        // The relay also sends what the Invoicer adds meanwhile (invoice.finalized events),
        // so this overlaps the issuing.
        _ = try await pool.withConnection { try await OutboxRelay(publisher: publisher, logger: BenchSupport.logger).drain($0) }
        let planned = BenchSupport.seconds(ContinuousClock.now - clock)
        var status: BillingRunStatus?
        while status?.status != "completed" {
            try await Task.sleep(for: .milliseconds(200))
            status = try await pool.withTransaction { try BillingRunStatus.load(plan.runID, on: $0) }
        }
        let seconds = BenchSupport.seconds(ContinuousClock.now - clock)
        let rate = Double(plan.due) / seconds
        let kind = graduated ? " on graduated plans (5 tiers × 4 metrics)" : ""
        let beside = referenceRate.map { " — \(String(format: "%.0f", 100 * rate / $0)) % of the standard plan's \(BenchSupport.format($0))/s" } ?? ""
        print(
            "billing\(kind): \(plan.due) invoices (\(subscriptions) new subscriptions with usage) in \(String(format: "%.1f", seconds)) s "
                + "= \(BenchSupport.format(Double(plan.due) / seconds)) invoices/s (planning \(String(format: "%.1f", plannedAfter)) s, then sending the commands and the first invoices' events "
                + "\(String(format: "%.1f", planned - plannedAfter)) s; "
                + "issued \(status?.issued ?? 0), failed \(status?.failed ?? 0); targets 10k in ≤ 10 s, ≥ 1,000 invoices/s with 4 consumers)\(beside)"
        )
        BenchSupport.record(
            "billing", "billing run of \(plan.due) invoices\(kind)", value: rate, unit: "invoices/s", raw: referenceRate,
            rawLabel: referenceRate == nil ? nil : "the same run on the standard plan", target: "≥ 1,000/s")
        await publisher.close()
        await pool.close()
    }
}
