import Foundation
import Logging
import PostgresClient
import RabbitMQClient
import TallyTestSupport
import Testing

/// Stops and restarts the real servers: run alone by `./ops/local.sh test`'s outage phase.
extension OutageSuite {
    @Suite("Server restarts (outage)")
    struct ServerRestartOutageTests {
        let logger = Logger(label: "test.outage")

        @Test("a PostgreSQL pool survives a server restart: the call during the outage fails, later ones work")
        func postgresRestart() async throws {
            let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 2, logger: logger)
            #expect(try await pool.query("SELECT 1")[0].decode(0, as: Int.self) == 1)
            try await TestEnvironment.ops("stop", "postgres")
            let error = await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
            #expect(error?.isConnectionError == true)
            try await TestEnvironment.ops("start", "postgres")
            #expect(try await pool.query("SELECT 2")[0].decode(0, as: Int.self) == 2)
            await pool.close()
        }

        @Test("pooled connections idle across a PostgreSQL restart are replaced before use: the first calls after it succeed")
        func idleConnectionsAcrossRestart() async throws {
            let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 2, logger: logger)
            // Two overlapping calls open both connections.
            async let first = pool.query("SELECT 1 FROM pg_sleep(0.2)")
            async let second = pool.query("SELECT 1 FROM pg_sleep(0.2)")
            _ = try await (first, second)
            try await TestEnvironment.ops("stop", "postgres")
            try await TestEnvironment.ops("start", "postgres")
            async let third = pool.query("SELECT 3")
            async let fourth = pool.query("SELECT 4")
            #expect(try await third[0].decode(0, as: Int.self) == 3)
            #expect(try await fourth[0].decode(0, as: Int.self) == 4)
            await pool.close()
        }

        @Test("a consumer told connection.close by a stopping broker reports it with the broker's reason (and does not crash)")
        func consumerSeesBrokerShutdown() async throws {
            let configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-outage-consumer")
            let connection = try await AMQPConnection.connect(configuration: configuration, logger: logger)
            try await connection.openChannel(1)
            let queue = "test.outage.consumer.\(UUID().uuidString.prefix(8).lowercased())"
            try await connection.declareQueue(queue, durable: false, exclusive: true)
            try await connection.consume(queue)
            try await TestEnvironment.ops("stop", "rabbitmq")
            var failure: AMQPError?
            for _ in 0..<60 where failure == nil {
                do {
                    _ = try await connection.nextDelivery(timeout: .milliseconds(500))
                } catch {
                    failure = error
                }
            }
            try await TestEnvironment.ops("start", "rabbitmq")
            #expect(failure?.needsReconnect == true)
            if failure?.code == .connectionClosed { #expect(failure?.replyCode == 320) }  // CONNECTION_FORCED
        }

        @Test("an AMQP connection lost to a broker restart is reported, and connectRetrying gets a new one")
        func rabbitmqRestart() async throws {
            let configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-outage")
            let connection = try await AMQPConnection.connect(configuration: configuration, logger: logger)
            try await connection.openChannel(1, confirms: true)
            try await TestEnvironment.ops("stop", "rabbitmq")
            let error = await #expect(throws: AMQPError.self) {
                try await connection.declareQueue("amq.outage.probe", passive: true)
            }
            #expect(error?.needsReconnect == true)
            try await TestEnvironment.ops("start", "rabbitmq")
            let queue = "test.outage.\(UUID().uuidString.prefix(8).lowercased())"
            let replacement = try await AMQPConnection.connectRetrying(
                configuration: configuration, logger: logger, maxDelay: .seconds(1),
                setUp: { try await $0.openChannel(1, confirms: true) })
            try await replacement.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
            let outcome = try await replacement.publish([OutgoingMessage(exchange: "", routingKey: queue, body: [1])])
            #expect(outcome == [.confirmed])
            try await replacement.deleteQueue(queue)
        }
    }
}
