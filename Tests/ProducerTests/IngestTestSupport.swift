import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyStore
import TallyTestSupport
import Testing

@testable import Producer

/// A tenant with a key, a private queue, and the ingest app. The app publishes to an
/// exchange of the queue's own, so no other test's queue shares the broker's answers
/// to it; the queue is also bound to `usage`, where spawned `producer` processes publish.
struct IngestFixture {
    let adminToken = "test-admin-\(UUID().uuidString)"
    let tenant: Tenant
    let apiKey: String
    let queue: String
    let spoolDirectory: String
    let consumer: AMQPConnection

    static let logger = Logger(label: "test.producer")

    static func make() async throws -> IngestFixture {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: logger)
        let (tenant, key) = try await TenantStore(pool: pool).create(
            try NewTenant(name: "Ingest \(UUID().uuidString.prefix(6))", billingEmail: "ops@ingest.test", taxRateBps: 0))
        await pool.close()
        let queue = "test.ingest.\(UUID().uuidString.prefix(8).lowercased())"
        let consumer = try await AMQPConnection.connect(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: queue), logger: logger)
        try await consumer.openChannel(1)
        try await Topology.tally.declare(on: consumer)
        try await consumer.declareExchange(queue, type: .topic, durable: false)
        try await consumer.declareQueue(queue, durable: false, exclusive: true)  // gone with the connection, even if the test dies
        try await consumer.bindQueue(queue, exchange: queue, routingKey: "usage.#")
        try await consumer.bindQueue(queue, exchange: ExchangeName.usage, routingKey: "usage.#")
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
        return IngestFixture(tenant: tenant, apiKey: key.secret, queue: queue, spoolDirectory: spool, consumer: consumer)
    }

    func configuration() -> ProducerConfiguration {
        var configuration = ProducerConfiguration(
            amqpURL: TestEnvironment.amqpURL, databaseURL: TestEnvironment.databaseURL, adminToken: adminToken)
        configuration.port = 0
        configuration.spoolDirectory = spoolDirectory
        configuration.databasePoolSize = 2
        configuration.usageExchange = queue
        return configuration
    }

    func app(now: Date = TestClock.now()) async throws -> some ApplicationProtocol {
        try await buildApplication(configuration(), logger: Self.logger, clock: { now })
    }

    /// The events of this fixture's tenant that reached the queue, by id, and how
    /// many messages carried them; waits until `expected` arrived or the queue stays
    /// quiet for `quiet`. (Other tests publish to `usage` too: only this tenant counts.)
    func receivedEvents(expected: Int, quiet: Duration = .seconds(5)) async throws -> (ids: [String: Int], messages: Int) {
        try await consumer.consume(queue)
        var ids: [String: Int] = [:]
        var total = 0
        var messages = 0
        while total < expected, let delivery = try await consumer.nextDelivery(timeout: quiet) {
            #expect(delivery.properties.headers[HeaderName.schema] == .string("usage.v1"))
            #expect(delivery.properties.contentType == "application/json")
            #expect(delivery.properties.persistent)
            #expect(delivery.properties.messageID != nil)
            let events = try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [[String: Any]] ?? []
            let own = events.filter { $0["tenant_id"] as? String == tenant.id.uuidString.lowercased() }
            for event in own {
                ids[event["id"] as? String ?? "?", default: 0] += 1
                total += 1
            }
            if !own.isEmpty { messages += 1 }
            try await consumer.ack(delivery.deliveryTag)
        }
        return (ids, messages)
    }

    /// Whether any event of this fixture's tenant reached the queue (waits `quiet` for one).
    func anyEventArrived(quiet: Duration = .seconds(2)) async throws -> Bool {
        try await !receivedEvents(expected: 1, quiet: quiet).ids.isEmpty
    }

    func tearDown() async throws {
        try await consumer.deleteQueue(queue)
        try? await consumer.deleteExchange(queue)
        await consumer.close()
        try? FileManager.default.removeItem(atPath: spoolDirectory)
    }
}

extension TestResponse {
    var json: [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
    }

    var errorCode: String? { (json?["error"] as? [String: Any])?["code"] as? String }
    var errorField: String? { (json?["error"] as? [String: Any])?["field"] as? String }
}
