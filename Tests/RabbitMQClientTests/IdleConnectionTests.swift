import Foundation
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

/// A publishing connection that died while nobody used it is found out before the next
/// publish, which then goes out on a new connection and is confirmed.
///
/// The confirm timeout is an hour: a publish that waited for confirms on the dead
/// connection would hang until the time limit, never pass by luck.
@Suite("Idle publishing connections")
struct IdleConnectionTests {
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
