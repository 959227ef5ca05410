import BillingEngine
import Foundation
import Logging
import Metering
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing

@testable import Aggregator

/// `BillingEventRelay.broadcast` against the real broker: a transaction's quota states go
/// out 1,000 to a message, a few messages at a time, and a subscriber of the fanout gets
/// every one of them, once, in order.
@Suite("Aggregator: quota-state broadcast")
struct QuotaBroadcastTests {
    @Test("25,001 quota states (a 25,001-tenant transaction) reach a subscriber once each, in order, in messages of at most 1,000")
    func manyStates() async throws {
        let amqp = try AMQPConfiguration(url: TestEnvironment.amqpURL)
        let subscriber = try await AMQPConnection.connect(configuration: amqp, logger: AggregatorHarness.logger)
        try await subscriber.openChannel(1)
        let queue = "test.quota-broadcast.\(UUID().uuidString.lowercased())"
        try await subscriber.declareQueue(queue, durable: false, exclusive: true)
        try await subscriber.bindQueue(queue, exchange: ExchangeName.quotaState, routingKey: "")
        try await subscriber.consume(queue)
        let publisher = ConfirmedPublisher(configuration: amqp, logger: AggregatorHarness.logger)
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))  // JSON keeps microseconds
        let states = (0..<25_001).map { index in
            QuotaState(
                tenantID: UUID(), asOf: now, periodStart: nil, periodEnd: nil, subscription: .none,
                metrics: ["api_calls": QuotaState.Metric(used: Quantity(units: Int64(index)), quota: nil, enforcement: .soft)])
        }
        let ours = Set(states.map(\.tenantID))
        try await BillingEventRelay(publisher: publisher, logger: AggregatorHarness.logger).broadcast(states)

        // Other tests' Aggregators broadcast on the same fanout: only this test's tenants count.
        var received: [QuotaState] = []
        var sizes: [Int] = []
        let deadline = ContinuousClock.now + .seconds(120)  // a guard against hanging, not a bound
        while received.count < states.count, ContinuousClock.now < deadline {
            guard let delivery = try await subscriber.nextDelivery(timeout: .seconds(1)) else { continue }
            try await subscriber.ack(delivery.deliveryTag)
            let mine = try QuotaState.decodeAll(delivery.body).filter { ours.contains($0.tenantID) }
            if !mine.isEmpty { sizes.append(mine.count) }
            received += mine
        }
        // Compared state by state: a failure names the first difference, not 25,001 states.
        #expect(received.count == states.count)
        let differing = received.indices.first { $0 < states.count && received[$0] != states[$0] }
        #expect(differing == nil, "the first state that differs: \(differing.map { "#\($0): \(received[$0]) against \(states[$0])" } ?? "")")
        #expect(sizes == Array(repeating: 1000, count: 25) + [1])
        await publisher.close()
        await subscriber.close()
    }
}
