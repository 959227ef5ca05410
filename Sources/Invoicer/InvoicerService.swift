import Foundation
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import StripeSync
import TallyMessaging
import TallyRuntime

/// `invoicer run`: consumers of `invoicer.commands`, each generating one invoice per
/// command in its own transaction and acking after the commit; a sweeper publishes the
/// outbox (the commands of runs planned by the billing API, `invoice.finalized` events).
/// SIGTERM: every consumer finishes the command in hand, then the process exits.
struct InvoicerService: Service {
    let configuration: InvoicerConfiguration
    let logger: Logger

    func run() async throws {
        let amqp = try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-invoicer")
        let database = try PostgresConfiguration(url: configuration.databaseURL)
        let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
        let relay = OutboxRelay(publisher: publisher, logger: logger)
        let stopping = ShutdownFlag()
        let sweeper = PostgresPool(configuration: database, size: 1, logger: logger)
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<configuration.consumers {
                    let consumer = CommandConsumer(
                        index: index, amqp: amqp, database: database, prefetch: configuration.prefetch,
                        paymentTermsDays: configuration.paymentTermsDays, publisher: publisher, relay: relay, stopping: stopping,
                        logger: logger)
                    group.addTask { await consumer.run() }
                }
                if let stripe = configuration.stripe {
                    group.addTask { await pushToStripe(stripe, database: database, stopping: stopping) }
                }
                group.addTask {
                    while !stopping.isSet {
                        do {
                            _ = try await sweeper.withTransaction { try StripeEventApplier.applyPending(on: $0) }
                            _ = try await sweeper.withConnection { try await relay.drain($0) }
                        } catch {
                            logger.warning("outbox sweep failed; retrying", metadata: ["error": "\(error)"])
                        }
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                }
            }
        } onGracefulShutdown: {
            logger.info("shutting down: finishing the commands in hand")
            stopping.set()
        }
        await publisher.close()
        await sweeper.close()
        logger.info("invoicer stopped")
    }

    /// Pushes invoices of `stripe` tenants to Stripe until shutdown, one at a time on its
    /// own connection; polls every second when none is due.
    private func pushToStripe(_ stripe: StripeConfiguration, database: PostgresConfiguration, stopping: ShutdownFlag) async {
        var logger = self.logger
        logger[metadataKey: "task"] = "stripe"
        let sync: StripeSync
        do {
            sync = try StripeSync(configuration: stripe, logger: logger)
        } catch {
            return logger.error("cannot start the Stripe client; invoices stay pending", metadata: ["error": "\(error)"])
        }
        logger.info("pushing invoices to Stripe", metadata: ["stripe.api": "\(stripe.apiBase)"])
        guard let connection = await PostgresConnection.connectRetrying(
            configuration: database, logger: logger, shouldStop: { stopping.isSet })
        else { return }
        while !stopping.isSet {
            do {
                if case .idle = try await sync.syncNext(on: connection) { try? await Task.sleep(for: .seconds(1)) }
            } catch {
                logger.warning("Stripe push interrupted; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(2))
            }
        }
        await connection.close()
    }
}

/// One consumer of invoice commands with its own AMQP and PostgreSQL connections.
struct CommandConsumer: Sendable {
    let index: Int
    let amqp: AMQPConfiguration
    let database: PostgresConfiguration
    let prefetch: UInt16
    /// Days from issue to due date of every invoice this consumer issues.
    let paymentTermsDays: Int
    let publisher: ConfirmedPublisher
    let relay: OutboxRelay
    let stopping: ShutdownFlag
    let logger: Logger

    var router: FailureRouter { FailureRouter(queue: QueueName.invoicerCommands, publisher: publisher) }

    func run() async {
        let logger = {
            var logger = self.logger
            logger[metadataKey: "consumer"] = "\(index)"
            return logger
        }()
        guard let connection = await PostgresConnection.connectRetrying(
            configuration: database, logger: logger, shouldStop: { stopping.isSet })
        else { return }
        while !stopping.isSet {
            let channel: AMQPConnection
            do {
                channel = try await cancelWhenGracefulShutdown {
                    try await AMQPConnection.connectRetrying(configuration: amqp, logger: logger, setUp: { connection in
                        try await connection.openChannel(1)
                        try await Topology.tally.declare(on: connection)
                        try await connection.setPrefetch(prefetch)
                        try await connection.consume(QueueName.invoicerCommands)
                    })
                }
            } catch {
                break
            }
            do {
                while !stopping.isSet {
                    guard let delivery = try await channel.nextDelivery(timeout: .milliseconds(250)) else { continue }
                    guard try await handle(delivery, database: connection, logger: logger) else { break }
                    try await channel.ack(delivery.deliveryTag)
                }
            } catch {
                logger.warning("consumer stopped; reconnecting", metadata: ["error": "\(error)"])
            }
            await channel.close()
        }
        await connection.close()
    }

    /// Generates, parks or retries the command; false when shutdown came during a
    /// database outage (nothing is acked: the broker redelivers).
    private func handle(_ delivery: Delivery, database: PostgresConnection, logger: Logger) async throws -> Bool {
        let command: InvoiceCommand
        do {
            command = try JSONDecoder().decode(InvoiceCommand.self, from: Data(delivery.body))
        } catch {
            try await router.park([delivery], reasons: ["not an invoice.generate command: \(error)"])
            logger.error("command parked: unreadable")
            return true
        }
        var logger = logger
        logger[metadataKey: "subscription.id"] = "\(command.subscriptionID)"
        logger[metadataKey: "billing_run.id"] = "\(command.billingRunID)"
        var delay = Duration.milliseconds(100)
        var conflicts = 0
        while true {
            do {
                let outcome = try await database.withTransaction {
                    try InvoiceGenerator.generate(command, paymentTermsDays: paymentTermsDays, on: $0)
                }
                if case .issued(_, let number) = outcome { logger.info("invoice issued", metadata: ["invoice.number": "\(number)"]) }
                _ = try? await relay.drain(database)
                return true
            } catch let error as PostgresError where error.isConnectionError || error.code == .connectionFailed {
                guard !stopping.isSet else { return false }
                logger.warning("database unavailable; holding the command", metadata: ["error": "\(error)", "retry.in": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            } catch let error as PostgresError where error.isRetryableConflict && conflicts < 3 {
                conflicts += 1
                try? await Task.sleep(for: .milliseconds(20 * conflicts))
            } catch {
                let decision = try await router.retryOrPark(delivery, reason: String(reflecting: error))
                if case .park = decision { try await markFailed(command, error: error, database: database) }
                logger.error("invoice generation failed", metadata: ["error": "\(String(reflecting: error))", "decision": "\(decision)"])
                return true
            }
        }
    }

    private func markFailed(_ command: InvoiceCommand, error: any Error, database: PostgresConnection) async throws {
        try await database.query(
            """
            UPDATE billing_run_items SET status = 'failed', error = $4, updated_at = now()
             WHERE billing_run_id = $1 AND subscription_id = $2 AND period_index = $3 AND status = 'pending'
            """, [command.billingRunID, command.subscriptionID, command.periodIndex, String(reflecting: error)])
    }
}
