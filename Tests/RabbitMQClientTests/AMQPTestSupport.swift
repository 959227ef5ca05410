import Foundation
import Logging
import RabbitMQClient
import TallyTestSupport

/// Connections and throwaway names for tests against the real broker.
enum AMQPTest {
    static let logger = Logger(label: "test.amqp")

    static func connect(_ name: String = "tally-test") async throws -> AMQPConnection {
        let configuration = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: name)
        let connection = try await AMQPConnection.connect(configuration: configuration, logger: logger)
        try await connection.openChannel(1, confirms: true)
        return connection
    }

    static func uniqueName(_ prefix: String) -> String {
        "test.\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// Runs `rabbitmqctl` for our private node and returns its standard output.
    static func rabbitmqctl(_ arguments: String...) async throws -> String {
        try await TestEnvironment.output(of: TestEnvironment.rabbitmqctl, ["-q"] + arguments)
    }

    /// Deliveries until `count` arrived or nothing arrives for `quiet`.
    static func drain(
        _ connection: AMQPConnection, count: Int, quiet: Duration = .seconds(5)
    ) async throws -> [Delivery] {
        var deliveries: [Delivery] = []
        while deliveries.count < count, let delivery = try await connection.nextDelivery(timeout: quiet) {
            deliveries.append(delivery)
        }
        return deliveries
    }
}
