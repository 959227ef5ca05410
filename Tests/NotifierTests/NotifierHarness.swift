import Foundation
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyStore
import TallyTestSupport
import Testing

/// A private billing-event queue for one test (with fast retry queues: 1 s, 2 s, 3 s,
/// parked after 4 attempts), the real `notifier` binary consuming it with one consumer,
/// and the database. Events are published straight to the queue, so only this test's
/// notifier sees them; the stack's own notifier keeps serving `billing.events`.
struct NotifierHarness: Sendable {
    let id: String
    let queue: String
    let broker: AMQPConnection
    let database: PostgresPool
    static let retry = RetryPolicy(
        delays: [.init(label: "1s", milliseconds: 1_000), .init(label: "2s", milliseconds: 2_000), .init(label: "3s", milliseconds: 3_000)],
        maxAttempts: 4, deliveryLimit: 20)
    static let logger = Logger(label: "test.notifier")
    static var binary: String { TestEnvironment.repositoryRoot + "/.build/debug/notifier" }

    static func make() async throws -> NotifierHarness {
        let id = String(UUID().uuidString.prefix(8)).lowercased()
        let queue = "test.notifier.\(id)"
        let broker = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-notifier"), logger: logger)
        try await broker.openChannel(1, confirms: true)
        try await Topology(exchanges: [], queues: [], bindings: []).adding(workQueue: queue, boundTo: nil, routingKey: "#", retry: retry)
            .declare(on: broker)
        let database = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 2, logger: logger)
        return NotifierHarness(id: id, queue: queue, broker: broker, database: database)
    }

    var environment: [String: String] {
        [
            "AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL, "SMTP_URL": TestEnvironment.smtpURL,
            "FINANCE_EMAIL": "finance@tally.localhost", "NOTIFIER_QUEUE": queue, "NOTIFIER_RETRY_DELAYS": "1s,2s,3s",
            "NOTIFIER_MAX_ATTEMPTS": "4", "NOTIFIER_CONSUMERS": "1", "NOTIFIER_PORT": "0", "LOG_FORMAT": "text",
        ]
    }

    /// Starts `notifier run` on this test's queue; `allowPrivate` lets webhooks reach loopback.
    func startNotifier(allowPrivate: Bool = true) throws -> ChildProcess {
        var environment = self.environment
        environment["TALLY_WEBHOOK_ALLOW_PRIVATE"] = allowPrivate ? "1" : "0"
        return try ChildProcess(
            Self.binary, ["run"], environment: environment,
            log: TestEnvironment.repositoryRoot + "/.local/log/test-notifier-\(id).log")
    }

    /// `notifier dlq ARGUMENTS` on this test's queue.
    func dlq(_ arguments: String...) async throws -> (status: Int32, output: String, errors: String) {
        try await TestEnvironment.run(Self.binary, ["dlq"] + arguments, environment: environment)
    }

    /// Publishes `event` straight to this test's queue (or its parking lot).
    func publish(_ event: BillingEvent, parked: Bool = false) async throws {
        var headers: [String: AMQPFieldValue] = [:]
        if parked { headers[HeaderName.parkReason] = .string("parked by the test") }
        let outcome = try await broker.publish([
            OutgoingMessage(
                exchange: parked ? ExchangeName.parking : "", routingKey: queue, body: try event.encoded(),
                properties: AMQPProperties(
                    contentType: "application/json", messageID: event.id, persistent: true, headers: headers),
                mandatory: true)
        ])
        #expect(outcome == [.confirmed])
    }

    /// Messages ready in a queue of this test (`suffix` "" for the work queue, ".parked", …).
    func depth(_ suffix: String = "") async throws -> Int {
        Int(try await broker.declareQueue(queue + suffix, passive: true))
    }

    /// Deletes the test's queues on a connection of its own (the publishing one may have
    /// idled past its heartbeat during a long wait).
    func tearDown() async throws {
        await broker.close()
        let connection = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-notifier"), logger: Self.logger)
        try await connection.openChannel(1)
        for name in [queue, queue + ".parked"] + Self.retry.delays.map({ Self.retry.retryQueue(for: queue, delay: $0) }) {
            try await connection.deleteQueue(name)
        }
        await connection.close()
        await database.close()
    }

    /// A tenant of this test.
    func tenant(name: String, email: String, taxBps: Int = 0) async throws -> UUID {
        try await database.query(
            "INSERT INTO tenants (name, billing_email, tax_rate_bps) VALUES ($1, $2, $3) RETURNING id", [name, email, taxBps]
        )[0].decode(0, as: UUID.self)
    }

    /// `subscriptions` monthly subscriptions on `plan` that started a month and a day ago,
    /// billed by a run planned here and the stack's running Invoicer; returns the tenant's invoices.
    func billedInvoices(tenant: UUID, plan: String = "starter", subscriptions: Int = 1) async throws -> [InvoiceView] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let start = calendar.date(byAdding: .month, value: -1, to: calendar.startOfDay(for: TestClock.now()))!.addingTimeInterval(-86_400)
        for _ in 0..<subscriptions {
            let subscription = try await database.query(
                "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, $2, $2) RETURNING id", [tenant, start]
            )[0].decode(0, as: UUID.self)
            try await database.query(
                """
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                VALUES ($1, $2, (SELECT max(version) FROM plan_versions WHERE plan_slug = $2), $3, 'start', $3)
                """, [subscription, plan, start])
        }
        // Planned in process, as `invoicer bill` plans it; the running Invoicer's outbox
        // sweeper sends the commands.
        let asOf = TestClock.now()
        _ = try await database.withTransaction {
            try BillingRunPlanner.plan(
                asOf: asOf, grace: TimeInterval(BillingRunPlanner.defaultGraceSeconds), tenants: [tenant], on: $0)
        }
        try await waitUntil("\(subscriptions) invoice(s) issued") {
            try await database.query("SELECT count(*) FROM invoices WHERE tenant_id = $1", [tenant])[0].decode(0, as: Int.self)
                >= subscriptions
        }
        return try await InvoiceStore(pool: database).list(tenant: tenant)
    }

    /// Polls until `condition` holds; a guard against hanging, not a performance bound.
    func waitUntil(_ what: String, limit: Duration = .seconds(300), _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("gave up waiting for \(what)")
    }
}

extension BillingEvent {
    /// The `invoice.finalized` event of an issued invoice, as the Invoicer writes it.
    static func finalized(_ invoice: InvoiceView) -> BillingEvent { .invoiceFinalized(.init(invoice)) }

    /// An `alert.triggered` event of a made-up alert (a marker: only the test's notifier gets it).
    static func marker(tenant: UUID, metric: String = "api_calls") -> BillingEvent {
        .alertTriggered(
            .init(
                tenantID: tenant, occurredAt: TestClock.now(), alertID: UUID(), alertKind: "threshold", thresholdKey: "threshold:1", metric: metric,
                value: "2", threshold: "1", quota: nil, periodStart: Date(timeIntervalSince1970: 1_790_000_000),
                periodEnd: Date(timeIntervalSince1970: 1_792_592_000), channels: ["email"]))
    }
}
