import Foundation
import RabbitMQClient
import TallyTestSupport
import Testing

/// Against the real RabbitMQ that `./ops/local.sh up` starts.
@Suite("AMQP client")
struct AMQPConnectionTests {
    @Test("10,000 persistent messages are confirmed by a quorum queue and consumed back exactly once")
    func publishAndConsume() async throws {
        let queue = AMQPTest.uniqueName("bulk")
        let publisher = try await AMQPTest.connect("tally-test-publisher")
        try await publisher.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
        let ids = (0..<10_000).map { "m-\($0)" }
        for batch in stride(from: 0, to: ids.count, by: 500) {
            let messages = ids[batch..<min(batch + 500, ids.count)].map { id in
                OutgoingMessage(
                    exchange: "", routingKey: queue, body: Array(#"{"id":"\#(id)"}"#.utf8),
                    properties: AMQPProperties(contentType: "application/json", messageID: id, headers: ["x-n": .int(7)]))
            }
            let outcomes = try await publisher.publish(messages)
            #expect(outcomes.allSatisfy { $0 == .confirmed })
        }
        #expect(try await publisher.declareQueue(queue, passive: true) == 10_000)

        let consumer = try await AMQPTest.connect("tally-test-consumer")
        try await consumer.setPrefetch(500)
        try await consumer.consume(queue)
        var seen: [String: Int] = [:]
        var unacked = 0
        while seen.count < ids.count, let delivery = try await consumer.nextDelivery(timeout: .seconds(5)) {
            #expect(delivery.properties.persistent)
            #expect(delivery.properties.headers["x-n"] == .int(7))
            seen[delivery.properties.messageID ?? "?", default: 0] += 1
            unacked += 1
            if unacked == 250 {
                try await consumer.ack(delivery.deliveryTag, multiple: true)
                unacked = 0
            }
            if unacked > 0, seen.count == ids.count { try await consumer.ack(delivery.deliveryTag, multiple: true) }
        }
        #expect(seen.count == ids.count)
        #expect(seen.values.allSatisfy { $0 == 1 })
        try await publisher.deleteQueue(queue)
    }

    @Test("a message nacked without requeue lands in the dead-letter queue")
    func deadLetter() async throws {
        let queue = AMQPTest.uniqueName("work")
        let deadLetters = queue + ".dead"
        let connection = try await AMQPTest.connect()
        try await connection.declareQueue(deadLetters, arguments: ["x-queue-type": .string("quorum")])
        try await connection.declareQueue(
            queue,
            arguments: [
                "x-queue-type": .string("quorum"), "x-dead-letter-exchange": .string(""),
                "x-dead-letter-routing-key": .string(deadLetters),
            ])
        let message = OutgoingMessage(
            exchange: "", routingKey: queue, body: Array("poison".utf8),
            properties: AMQPProperties(messageID: "poison-1"))
        #expect(try await connection.publish([message]) == [.confirmed])

        let consumer = try await AMQPTest.connect()
        try await consumer.consume(queue)
        let delivery = try #require(try await consumer.nextDelivery(timeout: .seconds(5)))
        try await consumer.nack(delivery.deliveryTag, requeue: false)

        let reader = try await AMQPTest.connect()
        try await reader.consume(deadLetters)
        let dead = try #require(try await reader.nextDelivery(timeout: .seconds(10)))
        #expect(dead.properties.messageID == "poison-1")
        #expect(dead.body == Array("poison".utf8))
        try await reader.ack(dead.deliveryTag)
        try await connection.deleteQueue(queue)
        try await connection.deleteQueue(deadLetters)
    }

    @Test("a mandatory publish with no route is returned, the others are confirmed")
    func mandatoryReturn() async throws {
        let queue = AMQPTest.uniqueName("routed")
        let connection = try await AMQPTest.connect()
        try await connection.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
        let messages = [
            OutgoingMessage(exchange: "", routingKey: queue, body: [1], properties: AMQPProperties(messageID: "a")),
            OutgoingMessage(exchange: "", routingKey: queue + ".nowhere", body: [2], properties: AMQPProperties(messageID: "b")),
            OutgoingMessage(exchange: "", routingKey: queue, body: [3], properties: AMQPProperties(messageID: "c")),
        ]
        let outcomes = try await connection.publish(messages)
        #expect(outcomes[0] == .confirmed)
        #expect(outcomes[1] == .returned(replyCode: 312, replyText: "NO_ROUTE"))
        #expect(outcomes[2] == .confirmed)
        try await connection.deleteQueue(queue)
    }

    @Test("publishing to a missing exchange surfaces the broker's channel close (404)")
    func channelClosed() async throws {
        let connection = try await AMQPTest.connect()
        let missing = OutgoingMessage(exchange: AMQPTest.uniqueName("missing"), routingKey: "x", body: [1])
        let error = await #expect(throws: AMQPError.self) { try await connection.publish([missing]) }
        #expect(error?.code == .channelClosed)
        #expect(error?.replyCode == 404)
        #expect(error?.message.contains("NOT_FOUND") == true)
        // The connection survives a channel error: a new channel works.
        try await connection.openChannel(2, confirms: true)
        let queue = AMQPTest.uniqueName("after")
        try await connection.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")], channel: 2)
        try await connection.deleteQueue(queue, channel: 2)
    }

    @Test("a connection closed by the broker is a typed error, and a new connection works")
    func connectionClosedByBroker() async throws {
        let name = AMQPTest.uniqueName("doomed")
        let connection = try await AMQPTest.connect(name)
        try await BrokerConnections.close(named: name)
        let error = await #expect(throws: AMQPError.self) {
            for _ in 0..<50 {
                try await connection.declareQueue("amq.rabbitmq.trace.never", passive: true)
                _ = try await connection.nextDelivery(timeout: .milliseconds(100))
            }
        }
        #expect(error?.needsReconnect == true)
        #expect(await connection.isOpen == false)
        let replacement = try await AMQPTest.connect(name)
        let queue = AMQPTest.uniqueName("replacement")
        try await replacement.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
        try await replacement.deleteQueue(queue)
    }

    @Test("AMQP_URL forms parse, with vhost, credentials and options")
    func urlParsing() throws {
        let plain = try AMQPConfiguration(url: "amqp://guest:guest@127.0.0.1:35672/%2F")
        #expect(plain.vhost == "/")
        #expect(plain.port == 35672)
        #expect(!plain.useTLS)
        let tls = try AMQPConfiguration(url: "amqps://u%40x:p%3Aw@mq.internal/billing?heartbeat=10&connection_timeout=3")
        #expect(tls.useTLS)
        #expect(tls.port == 5671)
        #expect(tls.user == "u@x")
        #expect(tls.password == "p:w")
        #expect(tls.vhost == "billing")
        #expect(tls.heartbeat == 10)
        #expect(tls.connectionTimeout == .seconds(3))
        #expect(!tls.description.contains("p:w"))
        #expect(try AMQPConfiguration(url: "amqp://localhost").vhost == "/")
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "http://localhost") }
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqp://localhost/?heartbeat=x") }
    }

    @Test("AMQP_URL may list a cluster's nodes: whole URLs that differ in host and port, or host:port")
    func clusterURLParsing() throws {
        let urls = try AMQPConfiguration(url: "amqp://u:p@mq-1:5701/billing?heartbeat=10, amqp://u:p@mq-2:5702/billing?heartbeat=10")
        #expect(urls.endpoints == [.init(host: "mq-1", port: 5701), .init(host: "mq-2", port: 5702)])
        #expect(urls.vhost == "billing" && urls.user == "u" && urls.heartbeat == 10)
        #expect(urls.description == "amqp://u@mq-1:5701,mq-2:5702/billing")
        let three = try AMQPConfiguration(url: "amqp://u:p@mq-1/%2F?heartbeat=5,amqp://u:p@mq-2/%2F?heartbeat=5,amqp://u:p@mq-3:5673/%2F?heartbeat=5")
        #expect(three.endpoints.map(\.description) == ["mq-1:5672", "mq-2:5672", "mq-3:5673"])
        #expect(try AMQPConfiguration(url: "amqp://u:p@mq-1/%2F?heartbeat=5,mq-2,mq-3").heartbeat == 5)
        let short = try AMQPConfiguration(url: "amqps://u:p@mq-1/%2F,mq-2:5699,mq-3")
        #expect(short.endpoints.map(\.description) == ["mq-1:5671", "mq-2:5699", "mq-3:5671"])
        #expect(try AMQPConfiguration(url: "amqp://mq-1").alternateEndpoints.isEmpty)
        // Nodes that disagree in more than their address, and malformed entries, are refused.
        for bad in [
            "amqp://u:p@mq-1/%2F,amqp://u:other@mq-2/%2F", "amqp://u:p@mq-1/%2F,amqps://u:p@mq-2/%2F",
            "amqp://u:p@mq-1/a,amqp://u:p@mq-2/b", "amqp://mq-1,", "amqp://mq-1,,mq-2", "amqp://mq-1,mq-2/vhost", "amqp://mq-1,u@mq-2",
            "amqp://u:p@mq-1/%2F,mq-2:5672?heartbeat=30",
        ] {
            #expect(throws: AMQPError.self, "\(bad)") { try AMQPConfiguration(url: bad) }
        }
    }

    @Test("a node that does not answer is passed over, whichever node a connection starts from; none answering names each")
    func failover() async throws {
        let live = try AMQPConfiguration(url: TestEnvironment.amqpURL)
        // Port 1 on loopback refuses at once, as a killed node's port does.
        var configuration = live
        configuration.alternateEndpoints = [.init(host: "127.0.0.1", port: 1)]
        for _ in 0..<4 {
            let connection = try await AMQPConnection.connect(configuration: configuration, logger: AMQPTest.logger)
            #expect(await connection.endpoint == AMQPConfiguration.Endpoint(host: live.host, port: live.port))
            try await connection.openChannel(1)
            await connection.close()
        }
        var dead = live
        (dead.host, dead.port) = ("127.0.0.1", 1)
        dead.alternateEndpoints = [.init(host: "127.0.0.1", port: 2)]
        let error = await #expect(throws: AMQPError.self) {
            try await AMQPConnection.connect(configuration: dead, logger: AMQPTest.logger)
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("127.0.0.1:1") == true && error?.message.contains("127.0.0.1:2") == true)
    }

    @Test("wrong credentials fail to connect with a connectionFailed error")
    func wrongCredentials() async throws {
        var configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL)
        configuration.password = "not-the-password"
        let error = await #expect(throws: AMQPError.self) {
            try await AMQPConnection.connect(configuration: configuration, logger: AMQPTest.logger)
        }
        #expect(error?.code == .connectionFailed)
    }

    @Test("purging a queue drops its ready messages and says how many")
    func purge() async throws {
        let connection = try await AMQPTest.connect()
        let queue = AMQPTest.uniqueName("purge")
        try await connection.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
        let outcomes = try await connection.publish((0..<3).map { OutgoingMessage(exchange: "", routingKey: queue, body: [UInt8($0)]) })
        #expect(outcomes == [.confirmed, .confirmed, .confirmed])
        #expect(try await connection.purgeQueue(queue) == 3)
        #expect(try await connection.declareQueue(queue, passive: true) == 0)
        try await connection.deleteQueue(queue)
        await connection.close()
    }
}
