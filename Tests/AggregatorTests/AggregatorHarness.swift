import CurlClient
import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

/// A private usage queue (with its retry and parking queues) for one test, the real
/// `aggregator` binary consuming it, and the database it writes to.
struct AggregatorHarness: Sendable {
    let id: String
    let exchange: String
    let queue: String
    let publisher: AMQPConnection
    let database: PostgresPool
    static let logger = Logger(label: "test.aggregator")

    static var binary: String { TestEnvironment.repositoryRoot + "/.build/debug/aggregator" }

    static func make() async throws -> AggregatorHarness {
        let id = String(UUID().uuidString.prefix(8)).lowercased()
        let exchange = "test.usage.\(id)"
        let queue = "test.aggregator.\(id)"
        let topology = Topology.make(
            exchanges: [.init(name: exchange, type: .topic)], workQueues: [(queue, exchange, "#")], retry: .standard)
        let configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-aggregator")
        let publisher = try await AMQPConnection.connect(configuration: configuration, logger: logger)
        try await publisher.openChannel(1, confirms: true)
        try await topology.declare(on: publisher)
        let database = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 2, logger: logger)
        return AggregatorHarness(id: id, exchange: exchange, queue: queue, publisher: publisher, database: database)
    }

    /// A database connection of the test's own (the ledger and the stores run on one).
    static func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), logger: logger)
    }

    /// A plan of the test's own, version 1, billed monthly in USD: `charges` is its JSON
    /// array of charges, one per metric (as `plan_versions.charges` holds them).
    func createPlan(_ code: String, baseCents: Int = 1000, charges: String) async throws {
        try await database.query(
            """
            WITH code AS (INSERT INTO subscription_plans (slug) VALUES ($1) RETURNING slug)
            INSERT INTO plan_versions (plan_slug, version, name, currency, billing_interval, base_cents, charges)
            SELECT slug, 1, 'Test ' || slug, 'usd', 'month', $2, $3::jsonb FROM code
            """, [code, baseCents, charges])
    }

    /// A plan charge of `metric` with a hard quota, included in the base fee, 10¢ a unit over.
    static func hardQuota(_ metric: String, _ quota: Int) -> String {
        #"{"metric": "\#(metric)", "enforcement": "hard", "quota": "\#(quota)", "model": "standard", "included": "\#(quota)", "unit_price": "10"}"#
    }

    /// The same queues and database through a new broker connection (after a broker restart).
    func reconnected() async throws -> AggregatorHarness {
        let configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-aggregator")
        let publisher = try await AMQPConnection.connectRetrying(
            configuration: configuration, logger: Self.logger, maxDelay: .seconds(1),
            setUp: { try await $0.openChannel(1, confirms: true) })
        return AggregatorHarness(id: id, exchange: exchange, queue: queue, publisher: publisher, database: database)
    }

    /// `/metrics` of an aggregator on `port`, as name → value.
    static func metrics(port: Int) async throws -> [String: Double] {
        let response = try await HTTPClient().send(.init(url: "http://127.0.0.1:\(port)/metrics"))
        return PrometheusText.parse(String(decoding: response.body, as: UTF8.self))
    }

    /// Removes the test's queues and exchange, and archives its plans (`test-…-ID`: closed
    /// to new subscriptions, so the open catalog does not grow with every test run). A
    /// test whose publishing connection was closed (a broker restart) removes the queues
    /// over a new one.
    func tearDown() async throws {
        let connection: AMQPConnection
        if await publisher.isAlive() {
            connection = publisher
        } else {
            await publisher.close()
            connection = try await AMQPConnection.connect(
                configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-aggregator"), logger: Self.logger)
            try await connection.openChannel(1, confirms: true)
        }
        for name in [queue, "\(queue).parked"] + RetryPolicy.standard.delays.map({ RetryPolicy.standard.retryQueue(for: queue, delay: $0) }) {
            try await connection.deleteQueue(name)
        }
        try await connection.deleteExchange(exchange)
        await connection.close()
        try await database.query(
            "UPDATE subscription_plans SET archived_at = now() WHERE slug LIKE $1 AND archived_at IS NULL", ["test-%-\(id)"])
        await database.close()
    }

    /// Starts `aggregator run` on this test's queue.
    func startAggregator(consumers: Int = 2, name: String = "a", port: Int = 0, environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(
            Self.binary, ["run"],
            environment: [
                "AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL, "AGGREGATOR_QUEUE": queue,
                "AGGREGATOR_PORT": "\(port)", "AGGREGATOR_CONSUMERS": "\(consumers)", "LOG_FORMAT": "text",
                "LOG_LEVEL": "info",
            ].merging(environment) { $1 },
            log: logPath(name))
    }

    func logPath(_ name: String) -> String { TestEnvironment.repositoryRoot + "/.local/log/test-aggregator-\(id)-\(name).log" }

    /// Runs DDL on a table other tests write to concurrently; a deadlock victim is
    /// retried until it goes through.
    func ddl(_ script: String) async throws {
        for attempt in 1...20 {
            do {
                try await database.withConnection { try await $0.executeScript(script) }
                return
            } catch let error as PostgresError where error.isRetryableConflict && attempt < 20 {
                try await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    /// A database-side refusal the validator cannot foresee: this test's own unique_count
    /// metric (`k` counted) and a trigger raising `raise` (PL/pgSQL, after `RAISE
    /// EXCEPTION`) for its distinct values matching `when` (DDL on one small table, which
    /// cannot deadlock with other tests the way DDL on the partitioned events can).
    /// Returns the metric; `removeRefusal` undoes it.
    func installRefusal(_ prefix: String, raise: String, when condition: String = "TRUE") async throws -> String {
        let metric = "\(prefix)_\(id)"
        try await database.query(
            "INSERT INTO billable_metrics (code, name, aggregation, unique_field) VALUES ($1, $1, 'unique_count', 'k')", [metric])
        try await ddl(
            """
            CREATE FUNCTION test_\(metric)() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION \(raise); END $$;
            CREATE TRIGGER test_\(metric) BEFORE INSERT ON usage_rollup_values FOR EACH ROW
                WHEN (NEW.metric = '\(metric)' AND \(condition)) EXECUTE FUNCTION test_\(metric)();
            """)
        return metric
    }

    /// Removes what `installRefusal` added.
    func removeRefusal(_ metric: String) async throws {
        try await ddl("DROP TRIGGER test_\(metric) ON usage_rollup_values; DROP FUNCTION test_\(metric)();")
        try await database.query("DELETE FROM billable_metrics WHERE code = $1", [metric])
    }

    /// `count` new tenants.
    func createTenants(_ count: Int) async throws -> [UUID] {
        var tenants: [UUID] = []
        for index in 0..<count {
            tenants.append(
                try await database.query(
                    "INSERT INTO tenants (name, billing_email) VALUES ($1, 'agg@example.test') RETURNING id",
                    ["aggregator test \(id) #\(index)"])[0].decode(0, as: UUID.self))
        }
        return tenants
    }

    /// Publishes each body as one usage message, with confirms.
    func publish(_ bodies: [String], schema: String? = "usage.v1", acceptedAt: Date? = nil) async throws {
        let messages = bodies.map { body in
            OutgoingMessage(
                exchange: exchange, routingKey: RoutingKey.usageV1, body: Array(body.utf8),
                properties: AMQPProperties(
                    contentType: "application/json", messageID: EventID.make(), persistent: true,
                    timestamp: acceptedAt.map { Int64($0.timeIntervalSince1970) }, headers: schema.map { [HeaderName.schema: .string($0)] } ?? [:]),
                mandatory: true)
        }
        for chunk in stride(from: 0, to: messages.count, by: 50) {
            let outcomes = try await publisher.publish(Array(messages[chunk..<min(chunk + 50, messages.count)]))
            #expect(outcomes.allSatisfy { $0 == .confirmed })
        }
    }

    /// Publishes one usage message straight to the work queue with extra headers.
    func publishRaw(_ body: String, headers: [String: AMQPFieldValue]) async throws {
        var all = headers
        all[HeaderName.schema] = .string("usage.v1")
        let outcome = try await publisher.publish([
            OutgoingMessage(
                exchange: "", routingKey: queue, body: Array(body.utf8),
                properties: AMQPProperties(contentType: "application/json", messageID: EventID.make(), persistent: true, headers: all),
                mandatory: true)
        ])
        #expect(outcome == [.confirmed])
    }

    /// Messages ready in a queue of this test (`suffix` "" for the work queue, ".parked", …).
    func depth(_ suffix: String = "") async throws -> Int {
        Int(try await publisher.declareQueue(queue + suffix, passive: true))
    }

    /// Polls `condition` until it holds; records an issue after `limit` (a guard
    /// against hanging, not a performance bound: it is minutes).
    func waitUntil(
        _ what: String, limit: Duration = .seconds(300), _ condition: @Sendable () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("gave up waiting for \(what)")
    }

    /// Stored events per tenant.
    func storedCounts(_ tenants: [UUID]) async throws -> [UUID: Int] {
        let rows = try await database.query(
            "SELECT tenant_id, count(*) FROM usage_events WHERE tenant_id = ANY($1::uuid[]) GROUP BY 1",
            ["{" + tenants.map(\.uuidString).joined(separator: ",") + "}"])
        var counts: [UUID: Int] = [:]
        for row in rows { counts[try row.decode(0, as: UUID.self)] = try row.decode(1, as: Int.self) }
        return counts
    }

    /// Rows where the rollups differ from a straight aggregation over usage_events
    /// for these tenants (sum, count, max and latest per tenant, metric and hour).
    func rollupMismatches(_ tenants: [UUID]) async throws -> Int {
        try await database.query(
            """
            WITH straight AS (
                SELECT tenant_id, metric, date_trunc('hour', occurred_at, 'UTC') AS hour, sum(quantity) AS quantity_sum,
                       count(*) AS event_count, max(quantity) AS quantity_max,
                       (array_agg(event_id ORDER BY occurred_at DESC, event_id COLLATE "C" DESC, quantity DESC))[1] AS latest_event_id,
                       (array_agg(quantity ORDER BY occurred_at DESC, event_id COLLATE "C" DESC, quantity DESC))[1] AS latest_quantity
                  FROM usage_events WHERE tenant_id = ANY($1::uuid[]) GROUP BY 1, 2, 3
            ), rolled AS (
                SELECT tenant_id, metric, hour, quantity_sum, event_count, quantity_max, latest_event_id, latest_quantity
                  FROM usage_rollups WHERE tenant_id = ANY($1::uuid[])
            )
            SELECT count(*) FROM ((SELECT * FROM straight EXCEPT SELECT * FROM rolled)
                                  UNION ALL (SELECT * FROM rolled EXCEPT SELECT * FROM straight)) AS differences
            """, ["{" + tenants.map(\.uuidString).joined(separator: ",") + "}"])[0].decode(0, as: Int.self)
    }
}

/// One usage event as JSON text (SPEC §3).
func usageEventJSON(
    id: String, tenant: UUID, metric: String = "api_calls", quantity: String = "1", time: Date,
    metadata: String? = nil
) -> String {
    let extra = metadata.map { #", "metadata": \#($0)"# } ?? ""
    return
        #"{"id": "\#(id)", "tenant_id": "\#(tenant.uuidString.lowercased())", "type": "\#(metric)", "quantity": \#(quantity), "time": "\#(RFC3339.format(time))"\#(extra)}"#
}
