import Foundation
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyOutbox

/// What the Aggregator tells others after a commit: the outbox's billing events on
/// `billing.events` (confirmed, then marked published) and the tenants' quota
/// states on the `quota.state` fanout (a broadcast of the newest state; the next
/// commit sends it again, so a lost one only delays a refresh).
struct BillingEventRelay: Sendable {
    let publisher: ConfirmedPublisher
    let outbox: OutboxRelay
    let logger: Logger

    init(publisher: ConfirmedPublisher, logger: Logger) {
        self.publisher = publisher
        self.outbox = OutboxRelay(publisher: publisher, logger: logger)
        self.logger = logger
    }

    /// Runs after each commit; failures are logged, never thrown (the usage is committed).
    func afterCommit(_ outcome: LedgerOutcome, _ connection: PostgresConnection) async {
        do {
            try await broadcast(outcome.quotaStates)
            if outcome.billingEvents > 0 { _ = try await outbox.drain(connection) }
        } catch {
            logger.warning("billing events not sent yet; the outbox keeps them", metadata: ["error": "\(error)"])
        }
    }

    /// The states of a batch, up to 1,000 per message, published 10 messages at a time: a
    /// transaction of 50,000 tenants does not hold its 50 encoded messages at once.
    func broadcast(_ states: [QuotaState]) async throws {
        for group in stride(from: 0, to: states.count, by: Self.statesPerMessage * Self.messagesPerPublish) {
            let end = min(group + Self.statesPerMessage * Self.messagesPerPublish, states.count)
            let messages = stride(from: group, to: end, by: Self.statesPerMessage).map { start in
                OutgoingMessage(
                    exchange: ExchangeName.quotaState, routingKey: "",
                    body: QuotaState.encoded(Array(states[start..<min(start + Self.statesPerMessage, end)])),
                    properties: AMQPProperties(
                        contentType: "application/json", persistent: false, headers: [HeaderName.schema: .string(QuotaState.schema)]),
                    // A fanout no API server listens to (none runs the middleware) drops it:
                    // not an error, and it must not hold back the billing events below.
                    mandatory: false)
            }
            try await publisher.publish(messages)
        }
    }

    static let statesPerMessage = 1000
    static let messagesPerPublish = 10
}
