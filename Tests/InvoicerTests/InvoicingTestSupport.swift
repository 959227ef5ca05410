import CurlClient
import Foundation
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

/// Tenants and subscriptions written straight to the database, usage sent through
/// the real pipeline (RabbitMQ → the running aggregator), bills run by the real
/// `invoicer` binary, invoices read back.
struct InvoicingFixture: Sendable {
    let database: PostgresPool
    let broker: AMQPConnection
    static let logger = Logger(label: "test.invoicer")
    static var binary: String { TestEnvironment.repositoryRoot + "/.build/debug/invoicer" }
    /// `BILLING_GRACE_SECONDS`' default, as the stack's processes run with it.
    static let grace = TimeInterval(BillingRunPlanner.defaultGraceSeconds)

    static func make() async throws -> InvoicingFixture {
        let broker = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-invoicer"), logger: logger)
        try await broker.openChannel(1, confirms: true)
        return InvoicingFixture(
            database: PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 2, logger: logger),
            broker: broker)
    }

    func close() async {
        await broker.close()
        await database.close()
    }

    func tenant(taxBps: Int = 0, paymentProvider: String = "none", email: String = "ap@invoiced.test") async throws -> UUID {
        try await database.query(
            "INSERT INTO tenants (name, billing_email, tax_rate_bps, payment_provider) VALUES ('Invoiced', $3, $1, $2) RETURNING id",
            [taxBps, paymentProvider, email]
        )[0].decode(0, as: UUID.self)
    }

    /// A subscription on `plan` from `start` (monthly); with a trial, anchored at its end.
    @discardableResult
    func subscribe(_ tenant: UUID, plan: String, start: Date, trialEnd: Date? = nil, endsAt: Date? = nil) async throws -> UUID {
        let id = try await database.query(
            "INSERT INTO subscriptions (tenant_id, started_at, trial_end, anchor, ends_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            [tenant, start, trialEnd, trialEnd ?? start, endsAt])[0]
            .decode(0, as: UUID.self)
        try await database.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, $2, (SELECT max(version) FROM plan_versions WHERE plan_slug = $2), $3, 'start', $3)
            """, [id, plan, start])
        return id
    }

    /// A plan change taking effect at `at` (as the subscriptions API records an upgrade).
    func change(_ subscription: UUID, to plan: String, at: Date, kind: String) async throws {
        try await database.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, $2, (SELECT max(version) FROM plan_versions WHERE plan_slug = $2), $3, $4, $3)
            """, [subscription, plan, at, kind])
    }

    /// Publishes usage (SPEC §3 batches) to the `usage` exchange and waits until the
    /// running aggregator has stored `expected` events for the tenant.
    func sendUsage(_ events: [String], tenant: UUID, expected: Int) async throws {
        for chunk in stride(from: 0, to: events.count, by: 1000) {
            let body = "[" + events[chunk..<min(chunk + 1000, events.count)].joined(separator: ",") + "]"
            let message = OutgoingMessage(
                exchange: ExchangeName.usage, routingKey: RoutingKey.usageV1, body: Array(body.utf8),
                properties: AMQPProperties(
                    contentType: "application/json", messageID: EventID.make(), persistent: true,
                    headers: [HeaderName.schema: .string("usage.v1")]),
                mandatory: true)
            // A nack (the broker refused it; seen once under CI load on this shared exchange)
            // is answered as a real publisher does: publish again. The Aggregator counts each
            // event once.
            var outcome = try await broker.publish([message])
            for _ in 1..<5 where outcome == [.nacked] { outcome = try await broker.publish([message]) }
            #expect(outcome == [.confirmed])
        }
        try await waitUntil("the aggregator stored \(expected) events") {
            try await database.query("SELECT count(*) FROM usage_events WHERE tenant_id = $1", [tenant])[0].decode(0, as: Int.self) == expected
        }
    }

    /// Plans a run in process, as `invoicer bill` and `POST /v1/billing-runs` do (its
    /// commands written to the outbox with it, published by the running Invoicer's outbox
    /// sweeper), and polls the run until the running Invoicers completed it; returns its
    /// status. Only `tenants` are billed when given: tests share one database, and a run
    /// for everyone would bill other tests' subscriptions before their usage arrived.
    @discardableResult
    func bill(asOf: Date, tenants: [UUID] = []) async throws -> BillingRunStatus? {
        let id = try await database.withTransaction {
            try BillingRunPlanner.plan(asOf: asOf, grace: Self.grace, tenants: tenants.isEmpty ? nil : tenants, on: $0)
        }.runID
        try await waitUntil("billing run \(id) completed") {
            try await database.withTransaction { try BillingRunStatus.load(id, on: $0) }?.status == "completed"
        }
        return try await database.withTransaction { try BillingRunStatus.load(id, on: $0) }
    }

    /// `/metrics` of the running Invoicer, as series → value.
    func invoicerMetrics() async throws -> [String: Double] {
        let response = try await HTTPClient().send(.init(url: TestEnvironment.invoicerURL + "/metrics"))
        #expect(response.status == 200)
        return PrometheusText.parse(String(decoding: response.body, as: UTF8.self))
    }

    func invoices(_ tenant: UUID) async throws -> [InvoiceView] {
        try await InvoiceStore(pool: database).list(tenant: tenant)
    }

    /// Polls until `condition` holds; a guard against hanging, not a performance bound.
    func waitUntil(_ what: String, _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("gave up waiting for \(what)")
    }
}

/// One usage event as JSON text.
func usageEvent(_ id: String, tenant: UUID, metric: String, quantity: String = "1", at time: Date) -> String {
    #"{"id": "\#(id)", "tenant_id": "\#(tenant.uuidString.lowercased())", "type": "\#(metric)", "quantity": \#(quantity), "time": "\#(RFC3339.format(time))"}"#
}

/// Round half up of numerator / denominator for non-negative values (SPEC §2 step 1), as
/// an independent check of the engine's proration.
func halfUp(_ numerator: Int64, _ denominator: Int64) -> Int64 {
    (2 * numerator + denominator) / (2 * denominator)
}

/// Midnight UTC `days` ago.
func midnight(daysAgo days: Double) -> Date {
    let day: TimeInterval = 86_400
    return Date(timeIntervalSince1970: ((TestClock.now().timeIntervalSince1970 - days * day) / day).rounded(.down) * day)
}

/// `date` plus whole calendar months in UTC.
func adding(months: Int, to date: Date) -> Date {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    return calendar.date(byAdding: .month, value: months, to: date)!
}
