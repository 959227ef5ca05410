import Foundation
import Hummingbird
import Invoicing
import Logging
import PostgresClient
import RabbitMQClient
import ServiceLifecycle
import StripeSync
import TallyHTTP
import TallyMessaging
import TallyOutbox
import TallyRuntime
import TallyStore

/// Builds `invoicer run`: its services beside a small HTTP server for `/metrics`,
/// `/healthz` and `/readyz`. Production and tests call the same function.
func buildApplication(_ configuration: InvoicerConfiguration, logger: Logger) throws -> some ApplicationProtocol {
    let metrics = InvoicerMetrics()
    let database = PostgresPool(configuration: try PostgresConfiguration(url: configuration.databaseURL), size: 1, logger: logger)
    let router = Router()
    HealthRoutes<BasicRequestContext> { (try? await database.ping()) != nil }.register(on: router)
    router.get("metrics") { _, _ -> Response in
        let backlog = try? await InvoicerMetrics.StripeBacklog.load(database)
        let runs = try? await InvoicerMetrics.BillingRuns.load(database)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render(backlog: backlog, runs: runs))))
    }
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally-invoicer"),
        logger: logger)
    for service in try InvoicerServices.make(configuration, metrics: metrics, logger: logger) { app.addServices(service) }
    return app
}

/// `invoicer run`'s services, in start order (shut down in reverse): the publisher; the
/// consumers of `invoicer.commands` (the shared `QueueWorker` with `CommandHandler`), each
/// generating the invoices of a batch of commands in one transaction and acking after the commit;
/// the outbox's sweeper (commands of runs planned by the billing API, `invoice.*` events);
/// the Stripe events' applier; and, with `STRIPE_API_KEY`, the Stripe push.
enum InvoicerServices {
    static func make(_ configuration: InvoicerConfiguration, metrics: InvoicerMetrics, logger: Logger) throws -> [any Service] {
        let amqp = try AMQPConfiguration(url: configuration.amqpURL, connectionName: "tally-invoicer")
        let database = try PostgresConfiguration(url: configuration.databaseURL)
        let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
        let relay = OutboxRelay(publisher: publisher, logger: logger)
        var worker = QueueWorkerSettings(name: "invoicer", queue: QueueName.invoicerCommands)
        worker.consumers = configuration.consumers
        worker.prefetch = configuration.prefetch
        // Commands are issued a batch per transaction (InvoiceGenerator.generate([...])).
        worker.maxBatch = Int(configuration.prefetch)
        worker.linger = .milliseconds(20)
        let handler = CommandHandler(database: database, relay: relay, paymentTermsDays: configuration.paymentTermsDays, metrics: metrics)
        var services: [any Service] = [
            PublisherService(publisher),
            QueueWorker(settings: worker, amqp: amqp, handler: handler, publisher: publisher, observer: metrics.worker, logger: logger),
            OutboxRelayService(relay: relay, database: database, logger: logger),
            StripeEventService(database: database, logger: logger),
        ]
        if let stripe = configuration.stripe {
            services.append(StripePusher(configuration: stripe, database: database, metrics: metrics, logger: logger))
        }
        return services
    }
}

/// Every half second: applies the Stripe events the billing API stored (paid invoices,
/// cards, failed payments, ended subscriptions), on a connection of its own. A failure is
/// retried at the next round and never holds back the outbox's sweeper beside it.
struct StripeEventService: Service {
    let database: PostgresConfiguration
    let logger: Logger

    func run() async throws {
        let pool = PostgresPool(configuration: database, size: 1, logger: logger)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                _ = try await StripeEventApplier.applyPending(on: pool)
            } catch {
                logger.warning("applying Stripe events failed; retrying", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(500)) }
        }
        await pool.close()
    }
}

/// Pushes invoices of `stripe` tenants to Stripe until shutdown, one at a time on its
/// own connection; polls every second when none is due.
struct StripePusher: Service {
    let configuration: StripeConfiguration
    let database: PostgresConfiguration
    let metrics: InvoicerMetrics
    let logger: Logger

    func run() async throws {
        var logger = self.logger
        logger[metadataKey: "task"] = "stripe"
        let sync: StripeSync
        do {
            sync = try StripeSync(configuration: configuration, logger: logger)
        } catch {
            // Only this task is off: the group (consumers, outbox) must go on.
            logger.error("cannot start the Stripe client; invoices stay pending", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
            return
        }
        logger.info("pushing invoices to Stripe", metadata: ["stripe.api": "\(configuration.apiBase)"])
        guard
            let connection = await PostgresConnection.connectRetrying(
                configuration: database, logger: logger, shouldStop: { Task.isShuttingDownGracefully || Task.isCancelled })
        else { return }  // shutting down
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                switch try await sync.syncNext(on: connection) {
                case .idle: try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
                case .synced: metrics.push("synced")
                case .failed(_, _, let final): metrics.push(final ? "failed" : "retrying")
                }
            } catch {
                logger.warning("Stripe push interrupted; retrying", metadata: ["error": "\(error)"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) }
            }
        }
        await connection.close()
    }
}

/// The Invoicer's work on one `invoice.generate` command, in one transaction on the
/// consumer's own PostgreSQL connection; after the commit the outbox is drained so the
/// `invoice.finalized` event leaves at once. A command parked after its last attempt
/// marks its billing-run item `failed` with the reason.
struct CommandHandler: QueueWorkHandler {
    let database: PostgresConfiguration
    let relay: OutboxRelay
    /// Days from issue to due date (`TALLY_PAYMENT_TERMS_DAYS`).
    let paymentTermsDays: Int
    let metrics: InvoicerMetrics

    func openSession(consumer: Int, logger: Logger, shouldStop: @escaping @Sendable () -> Bool) async -> PostgresConnection? {
        await PostgresConnection.connectRetrying(configuration: database, logger: logger, shouldStop: shouldStop)
    }

    func closeSession(_ session: PostgresConnection) async {
        await session.close()
    }

    func process(_ deliveries: [Delivery], in database: PostgresConnection, logger: Logger) async -> WorkOutcome {
        var poisoned: [WorkOutcome.Poisoned] = []
        var commands: [InvoiceGenerateCommand] = []
        for delivery in deliveries {
            do {
                commands.append(try InvoiceGenerateCommand.decode(delivery.body))
            } catch {
                poisoned.append(.init(deliveryTag: delivery.deliveryTag, reason: "not an invoice.generate command: \(error)"))
            }
        }
        // The batch's invoices in one transaction, with a fixed number of statements (a
        // command that cannot be carried out fails the batch, and the worker splits it).
        // Period invoices together; each adjustment invoice (rare) in a transaction of its
        // own, as it takes its number before its reads.
        var outcomes: [InvoiceGenerator.Outcome] = []
        let groups = [commands.filter { !$0.isAdjustment }] + commands.filter(\.isAdjustment).map { [$0] }
        do {
            var byCommand: [InvoiceGenerateCommand: InvoiceGenerator.Outcome] = [:]
            for group in groups where !group.isEmpty {
                let results = try await database.withTransaction { [group] in
                    try InvoiceGenerator.generate(group, paymentTermsDays: paymentTermsDays, on: $0)
                }
                for (command, outcome) in zip(group, results) { byCommand[command] = outcome }
            }
            outcomes = commands.compactMap { byCommand[$0] }
        } catch {
            logger.error(
                "invoice generation failed",
                metadata: [
                    "error": "\(String(reflecting: error))", "commands": "\(commands.count)",
                    "subscription.id": "\(commands.count == 1 ? "\(commands[0].subscriptionID)" : "several")",
                ])
            return WorkOutcome(poisoned: poisoned, failure: .classifying(error))
        }
        for (command, outcome) in zip(commands, outcomes) {
            metrics.invoice(outcome)
            var logger = logger
            logger[metadataKey: "subscription.id"] = "\(command.subscriptionID)"
            logger[metadataKey: "billing_run.id"] = "\(command.billingRunID)"
            switch outcome {
            case .issued(_, let number): logger.info("invoice issued", metadata: ["invoice.number": "\(number)"])
            case .failed(let reason): logger.error("invoice not issued", metadata: ["reason": "\(reason)"])
            case .alreadyIssued, .skipped: break
            }
        }
        _ = try? await relay.drain(database)
        return WorkOutcome(poisoned: poisoned)
    }

    func didPark(_ delivery: Delivery, reason: String, in database: PostgresConnection, logger: Logger) async {
        guard let command = try? InvoiceGenerateCommand.decode(delivery.body) else { return }
        do {
            try await BillingRunRecords.markFailedIfPending(
                run: command.billingRunID, subscription: command.subscriptionID, periodIndex: command.periodIndex, reason: reason, on: database)
        } catch {
            logger.error("could not mark the billing run item failed", metadata: ["error": "\(error)"])
        }
    }
}
