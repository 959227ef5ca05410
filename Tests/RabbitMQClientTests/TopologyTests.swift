import Foundation
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

@Suite("Topology")
struct TopologyTests {
    @Test("ops/rabbitmq/definitions.json is the export of Topology.tally")
    func definitionsFileMatches() throws {
        let path = TestEnvironment.repositoryRoot + "/ops/rabbitmq/definitions.json"
        let exported = try Topology.tally.definitionsJSON()
        if ProcessInfo.processInfo.environment["TALLY_REGENERATE_DEFINITIONS"] == "1" {
            try exported.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let committed = try String(contentsOfFile: path, encoding: .utf8)
        #expect(committed == exported, "regenerate with TALLY_REGENERATE_DEFINITIONS=1 swift test --filter TopologyTests")
    }

    @Test("every work queue has a parking lot and retry queues that flow back to it")
    func shape() {
        let topology = Topology.tally
        let names = Set(topology.queues.map(\.name))
        let policies = [
            (QueueName.aggregatorUsage, RetryPolicy.standard), (QueueName.invoicerCommands, .standard),
            (QueueName.notifierEvents, .notifications),
        ]
        for (work, policy) in policies {
            #expect(names.contains(work))
            #expect(names.contains(work + ".parked"))
            for delay in policy.delays {
                let retry = topology.queues.first { $0.name == "\(work).retry.\(delay.label)" }
                #expect(retry?.arguments["x-dead-letter-routing-key"] == .string(work))
                #expect(retry?.arguments["x-message-ttl"] == .int(delay.milliseconds))
            }
        }
        #expect(topology.bindings.contains(.init(exchange: "usage", queue: "aggregator.usage", routingKey: "usage.#")))
        #expect(topology.bindings.contains(.init(exchange: "billing.events", queue: "notifier.events", routingKey: "#")))
        #expect(Set(topology.exchanges.map(\.name)).count == topology.exchanges.count)
        #expect(RetryPolicy.delays(parsing: "1s, 2s,500ms,1h")?.map(\.milliseconds) == [1_000, 2_000, 500, 3_600_000])
        #expect(RetryPolicy.delays(parsing: "1s,soon") == nil)
        // Beyond RabbitMQ's longest TTL (about 49.7 days), or beyond 64 bits (a crash before).
        #expect(RetryPolicy.delays(parsing: "1193h")?.map(\.milliseconds) == [4_294_800_000])
        #expect(RetryPolicy.delays(parsing: "1194h") == nil)
        #expect(RetryPolicy.delays(parsing: "9999999999999999h") == nil)
    }

    @Test("the retry policy backs off, then parks")
    func retryDecisions() {
        let policy = RetryPolicy.standard
        #expect(policy.next(afterFailedAttempt: 1, queue: "q") == .retry(routingKey: "q.retry.5s", attempt: 2))
        #expect(policy.next(afterFailedAttempt: 2, queue: "q") == .retry(routingKey: "q.retry.30s", attempt: 3))
        #expect(policy.next(afterFailedAttempt: 5, queue: "q") == .retry(routingKey: "q.retry.5m", attempt: 6))
        #expect(policy.next(afterFailedAttempt: 6, queue: "q") == .park(routingKey: "q"))
    }

    @Test("the real topology declares cleanly twice on the live broker")
    func declareTwice() async throws {
        let connection = try await AMQPTest.connect()
        try await Topology.tally.declare(on: connection)
        try await Topology.tally.declare(on: connection)
        // A passive declare throws when the queue does not exist.
        await #expect(throws: Never.self) { _ = try await connection.declareQueue(QueueName.aggregatorUsage, passive: true) }
    }

    @Test("a message sent to a retry queue comes back to its work queue; a rejected one is parked")
    func retryAndPark() async throws {
        let prefix = AMQPTest.uniqueName("topo")
        let policy = RetryPolicy(delays: [.init(label: "200ms", milliseconds: 200)], maxAttempts: 2, deliveryLimit: 3)
        let exchange = prefix + ".in"
        let work = prefix + ".work"
        var topology = Topology.make(
            exchanges: [.init(name: exchange, type: .topic)], workQueues: [(work, exchange, "#")], retry: policy)
        // Test-only retry and parking exchanges, so parallel tests never share them.
        topology = Topology(
            exchanges: topology.exchanges.filter { $0.name == exchange },
            queues: topology.queues.map { queue in
                var arguments = queue.arguments
                if arguments["x-dead-letter-exchange"] == .string(ExchangeName.parking) {
                    arguments["x-dead-letter-exchange"] = .string("")
                    arguments["x-dead-letter-routing-key"] = .string(policy.parkingQueue(for: work))
                }
                return .init(name: queue.name, arguments: arguments)
            },
            bindings: topology.bindings.filter { $0.exchange == exchange })
        let connection = try await AMQPTest.connect()
        try await topology.declare(on: connection)

        guard case .retry(let retryQueue, let attempt) = policy.next(afterFailedAttempt: 1, queue: work) else {
            Issue.record("expected a retry")
            return
        }
        let retried = OutgoingMessage(
            exchange: "", routingKey: retryQueue, body: Array("again".utf8),
            properties: AMQPProperties(messageID: "r-1", headers: ["x-tally-attempt": .int(Int64(attempt))]))
        #expect(try await connection.publish([retried]) == [.confirmed])

        let consumer = try await AMQPTest.connect()
        try await consumer.consume(work)
        let back = try #require(try await consumer.nextDelivery(timeout: .seconds(10)))
        #expect(back.properties.messageID == "r-1")
        #expect(back.properties.headers["x-tally-attempt"] == .int(2))
        // Rejected past the delivery limit, the message dead-letters to the parking lot.
        try await consumer.reject(back.deliveryTag, requeue: false)
        let parkedReader = try await AMQPTest.connect()
        try await parkedReader.consume(policy.parkingQueue(for: work))
        let parked = try #require(try await parkedReader.nextDelivery(timeout: .seconds(10)))
        #expect(parked.properties.messageID == "r-1")
        try await parkedReader.ack(parked.deliveryTag)
        for queue in topology.queues { try await connection.deleteQueue(queue.name) }
        try await connection.deleteExchange(exchange)
    }
}
