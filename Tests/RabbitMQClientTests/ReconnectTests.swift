import Foundation
import RabbitMQClient
import Synchronization
import TallyTestSupport
import Testing

@Suite("AMQP reconnect policy")
struct ReconnectTests {
    @Test("connectRetrying keeps trying an unreachable broker until cancelled", .timeLimit(.minutes(1)))
    func retriesUntilCancelled() async throws {
        // A loopback port nothing listens on: every attempt is refused at once.
        let configuration = AMQPConfiguration(host: "127.0.0.1", port: 1, connectionName: "tally-test-retry")
        let attempts = Mutex(0)
        let task = Task {
            try await AMQPConnection.connectRetrying(
                configuration: configuration, logger: AMQPTest.logger, initialDelay: .milliseconds(10),
                maxDelay: .milliseconds(20),
                onFailure: { error, attempt in
                    #expect(error.code == .connectionFailed)
                    attempts.withLock { $0 = attempt }
                })
        }
        while attempts.withLock({ $0 }) < 3 { await Task.yield() }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(attempts.withLock { $0 } >= 3)
    }

    @Test("connectRetrying returns a set-up connection when the broker is there")
    func connectsAndSetsUp() async throws {
        let queue = AMQPTest.uniqueName("setup")
        let configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-setup")
        let connection = try await AMQPConnection.connectRetrying(
            configuration: configuration, logger: AMQPTest.logger,
            setUp: { connection in
                try await connection.openChannel(1, confirms: true)
                try await connection.declareQueue(queue, arguments: ["x-queue-type": .string("quorum")])
            })
        #expect(try await connection.declareQueue(queue, passive: true) == 0)
        try await connection.deleteQueue(queue)
    }
}
