import ArgumentParser
import Foundation
import Invoicing
import Logging
import Notifications
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// `notifier resend INVOICE`: emails an issued invoice again, with its PDF, to the tenant,
/// finance or both — a customer who lost it, a finance mailbox that bounced. The request is
/// an `invoice.finalized` event of its own (a new id, `resend_to` naming who gets it) put on
/// the Notifier's queue, so the running Notifiers send it with every guarantee of the first
/// (retries, parking, a delivery record); no webhook fires again.
struct ResendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resend",
        abstract: "Email an issued invoice again, with its PDF, to the tenant and/or finance (no webhook fires again).",
        discussion: ConfigurationReport.helpText([.amqpURL, .databaseURL, NotifierConfiguration.queue]))

    @Argument(help: "The invoice: its number (INV-2026-000123) or id.") var invoice: String
    @Option(help: "Who gets it: tenant, finance or tenant,finance.") var to = "tenant,finance"
    @Flag(help: "Return once the request is queued, without waiting for the emails.") var noWait = false

    func validate() throws {
        _ = try audiences()
    }

    func audiences() throws -> [BillingEvent.InvoiceFinalized.Audience] {
        let names = to.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let audiences = try names.map { name in
            guard let audience = BillingEvent.InvoiceFinalized.Audience(rawValue: name) else {
                throw ValidationError("--to takes tenant, finance or both (tenant,finance), not '\(name)'")
            }
            return audience
        }
        guard !audiences.isEmpty, Set(audiences).count == audiences.count else { throw ValidationError("--to names each of tenant, finance once") }
        return audiences
    }

    func run() async throws {
        let reader = ConfigurationReader()
        var logger = Logger(label: "notifier.resend")
        logger.logLevel = .error
        let audiences = try audiences()
        let database = PostgresPool(configuration: try PostgresConfiguration(url: try reader.string(.databaseURL)), size: 1, logger: logger)
        do {
            try await resend(audiences, reader: reader, database: database, logger: logger)
        } catch {
            await database.close()
            throw error
        }
        await database.close()
    }

    private func resend(
        _ audiences: [BillingEvent.InvoiceFinalized.Audience], reader: ConfigurationReader, database: PostgresPool, logger: Logger
    ) async throws {
        let found = try await database.withTransaction { connection in
            try InvoiceStore.invoice(idOrNumber: invoice, on: connection)
        }
        guard let view = found else {
            throw CommandFailure("no invoice \(invoice): give its number (INV-YYYY-NNNNNN) or its id, as GET /v1/invoices shows them")
        }
        let event = BillingEvent.invoiceFinalized(BillingEvent.InvoiceFinalized(view).resent(to: audiences, at: Date()))
        let queue = try reader.string(NotifierConfiguration.queue)
        let amqp = try AMQPConfiguration(url: try reader.string(.amqpURL), connectionName: "tally-notifier-resend")
        let publisher = ConfirmedPublisher(configuration: amqp, logger: logger)
        try await publisher.publish([
            OutgoingMessage(
                exchange: "", routingKey: queue, body: try event.encoded(),
                properties: AMQPProperties(contentType: "application/json", messageID: event.id, persistent: true), mandatory: true)
        ])
        await publisher.close()
        print("\(view.number): queued for the Notifier (to \(audiences.map(\.rawValue).joined(separator: " and ")); event \(event.id))")
        guard !noWait else { return }
        // The delivery records say what happened: sent, or failed with the server's answer;
        // the parking lot, whether the Notifier gave up on it (at once for an address or
        // answer no retry can fix), which ends the wait.
        let lot = ParkingLot(queue: queue, retry: .notifications, amqp: amqp)
        let deadline = ContinuousClock.now + .seconds(120)
        var reported: String?
        var nextParkingCheck = ContinuousClock.now
        while ContinuousClock.now < deadline {
            let deliveries = try await NotificationRecords.deliveries(ofEvent: event.id, on: database)
            let sent = deliveries.filter { $0.status == "sent" }
            if sent.count == audiences.count {
                for delivery in sent { print("sent to \(delivery.shownRecipient)") }
                return
            }
            if let failed = deliveries.first(where: { $0.status == "failed" }) {
                // Once per new failure, not four times a second for two minutes.
                let line = "not sent yet to \(failed.shownRecipient) after \(failed.attempts) attempt(s): \(failed.lastError ?? "")"
                if line != reported {
                    print("\(line) (the Notifier retries)")
                    reported = line
                }
                if ContinuousClock.now >= nextParkingCheck {
                    nextParkingCheck = ContinuousClock.now + .seconds(2)
                    if let parked = try await lot.peek(limit: 5_000, logger: logger).first(where: { $0.messageID == event.id }) {
                        throw CommandFailure(
                            "the Notifier parked it: \(parked.reason). Fix the cause, then `notifier dlq replay --id \(event.id)`")
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw CommandFailure("the Notifier has not sent it within 2 minutes: is `notifier run` running? (the request waits in \(queue))")
    }
}
