import Foundation
import Logging
import Metering
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime

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

    func broadcast(_ states: [QuotaState]) async throws {
        let messages = try states.map { state in
            OutgoingMessage(
                exchange: ExchangeName.quotaState, routingKey: "", body: try state.encoded(),
                properties: AMQPProperties(
                    contentType: "application/json", persistent: false, headers: [HeaderName.schema: .string(QuotaState.schema)]),
                // A fanout no API server listens to (none runs the middleware) drops it:
                // not an error, and it must not hold back the billing events below.
                mandatory: false)
        }
        try await publisher.publish(messages)
    }
}
