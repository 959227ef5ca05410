import Foundation
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

/// Connections nobody calls for a while: they keep themselves alive with heartbeats, and
/// one that died while nobody used it is found out before the next publish, which then
/// goes out on a new connection and is confirmed.
///
/// The confirm timeout is an hour: a publish that waited for confirms on the dead
/// connection would hang until the time limit, never pass by luck.
@Suite("Idle connections")
struct IdleConnectionTests {
    /// A connection to our broker with a 2-second heartbeat: the broker closes it as dead
    /// after about four seconds without a frame from it.
    static func connect(shortHeartbeat name: String) async throws -> AMQPConnection {
        var configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: name)
        configuration.heartbeat = 2
        let connection = try await AMQPConnection.connect(configuration: configuration, logger: AMQPTest.logger)
        try await connection.openChannel(1)
        return connection
    }

    /// What is tested here is a connection left alone: the test waits on purpose, for five
    /// heartbeats, and calls nothing on it meanwhile.
    static let idleTime = Duration.seconds(10)

    @Test("a connection nobody calls for five heartbeats is kept alive by its own heartbeats and still works", .timeLimit(.minutes(1)))
    func idleConnectionKeepsHeartbeating() async throws {
        let name = AMQPTest.uniqueName("heartbeats-idle")
        let connection = try await Self.connect(shortHeartbeat: name)
        let queue = AMQPTest.uniqueName("heartbeats")
        try await withCleanup {
            try await Task.sleep(for: Self.idleTime)
            // An AMQPConnection never reconnects by itself: this is the connection opened above.
            #expect(await connection.isAlive(), "the broker closed the idle connection")
            #expect(try await connection.declareQueue(queue, exclusive: true) == 0)
        } cleanup: {
            await connection.close()
        }
    }

    @Test(
        "a consumer that calls nothing for five heartbeats while it works on a delivery keeps its connection, and its ack settles the delivery",
        .timeLimit(.minutes(1)))
    func busyConsumerKeepsItsConnection() async throws {
        let queue = AMQPTest.uniqueName("heartbeats-busy")
        let admin = try await AMQPTest.connect("tally-test-heartbeats-admin")
        try await admin.declareQueue(queue)
        let consumer = try await Self.connect(shortHeartbeat: AMQPTest.uniqueName("heartbeats-consumer"))
        try await withCleanup {
            let outcomes = try await admin.publish([OutgoingMessage(exchange: "", routingKey: queue, body: [1])])
            #expect(outcomes == [.confirmed])
            try await consumer.setPrefetch(1)
            try await consumer.consume(queue)
            let delivery = try #require(try await consumer.nextDelivery(timeout: .seconds(10)))
            try await Task.sleep(for: Self.idleTime)
            // Had the broker closed the consumer's connection, the delivery would be ready
            // again; held by a live consumer, it is not counted.
            #expect(try await admin.declareQueue(queue, passive: true) == 0, "the delivery went back to the queue")
            try await consumer.ack(delivery.deliveryTag)
            // An RPC on the same channel returns after the broker handled the ack.
            _ = try await consumer.declareQueue(queue, passive: true)
            await consumer.close()
            #expect(try await admin.declareQueue(queue, passive: true) == 0, "the ack did not settle the delivery")
        } cleanup: {
            await consumer.close()
            _ = try? await admin.deleteQueue(queue)
            await admin.close()
        }
    }

    @Test("a publisher whose idle connection the broker closed reconnects on its next publish and gets its confirm", .timeLimit(.minutes(2)))
    func closedByBrokerWhileIdle() async throws {
        let name = AMQPTest.uniqueName("idle-publisher")
        let queue = AMQPTest.uniqueName("idle")
        let admin = try await AMQPTest.connect("tally-test-idle-admin")
        try await admin.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
        let publisher = ConfirmedPublisher(
            configuration: try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: name),
            logger: AMQPTest.logger, confirmTimeout: .seconds(3600))
        try await withCleanup {
            try await publisher.publish([OutgoingMessage(exchange: "", routingKey: queue, body: [1])])
            #expect(await publisher.connectionsOpened == 1)

            try await BrokerConnections.close(named: name)
            try await publisher.publish([OutgoingMessage(exchange: "", routingKey: queue, body: [2])])
            #expect(await publisher.connectionsOpened == 2, "the dead connection was not replaced before publishing")
            #expect(try await admin.declareQueue(queue, passive: true) == 2)
        } cleanup: {
            await publisher.close()
            _ = try? await admin.deleteQueue(queue)
            await admin.close()
        }
    }
}
