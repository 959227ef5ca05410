import ArgumentParser
import CurlClient
import Foundation
import InvoicePDF
import Invoicing
import Notifications
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// The Notifier's figures, each beside the raw rate measured in the same run:
/// - emails with the invoice PDF attached, sent by `notifier run` into the local sink,
///   against bare libcurl SMTP sends of the same rendered message from as many clients;
/// - signed webhook deliveries to a local receiver, against bare POSTs of the same body.
/// A release `notifier run` must consume `--queue` (`./ops/local.sh bench` starts one).
struct NotifyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify", abstract: "Emails with PDFs and signed webhooks per second through the Notifier, beside raw sends.")
    @Option(help: "Invoices to notify (two emails each).") var invoices = 500
    @Option(help: "Webhook deliveries.") var webhooks = 2_000
    @Option(help: "Concurrent raw clients (the notifier's NOTIFIER_CONSUMERS).") var clients = 2
    @Option(help: "The queue the release notifier consumes.") var queue = "bench.notifier"
    @Option(help: "The benchmark's webhook receiver.") var receiver = "http://127.0.0.1:28190"

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["DATABASE_URL"], let smtpURL = environment["SMTP_URL"] else {
            throw ValidationError("DATABASE_URL and SMTP_URL are not set: run through ./ops/local.sh bench, or source .local/env")
        }
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: databaseURL), size: 2, logger: BenchSupport.logger)
        let broker = try await AMQPConnection.connect(configuration: try BenchSupport.broker(), logger: BenchSupport.logger)
        try await broker.openChannel(1, confirms: true)
        try await emails(pool: pool, broker: broker, smtp: try SMTPConfiguration(url: smtpURL))
        try await deliveries(pool: pool, broker: broker)
        await broker.close()
        await pool.close()
    }

    private func emails(pool: PostgresPool, broker: AMQPConnection, smtp: SMTPConfiguration) async throws {
        let chosen = try await pool.withTransaction { connection in
            try InvoiceStore.newestNotNotified(limit: invoices, on: connection)
        }
        guard let sample = chosen.first else { throw ValidationError("no invoice without notifications: run `tally-bench billing` first") }
        // Raw: the very message the notifier sends, rendered once, sent by `clients` bare SMTP clients.
        let seller = try InvoiceSeller(reader: ConfigurationReader())
        let pdf = try InvoiceDocument(invoice: sample, seller: seller.party, customer: .init(name: "Bench", email: "bench@tally.localhost")).render()
        let message = NotificationEmail(sellerName: seller.name, sellerEmail: seller.email).invoice(
            sample, pdf: pdf, tenant: .init(name: "Bench", email: "bench@tally.localhost"),
            to: NotificationPlanner.plan(
                .invoiceFinalized(BillingEvent.InvoiceFinalized(sample)), tenantEmail: "bench@tally.localhost",
                financeEmail: "finance@tally.localhost",
                endpoints: [])[0])
        let rawCount = chosen.count * 2
        let rawSeconds = try await timed {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        let sender = try SMTPClient(configuration: smtp)
                        for _ in stride(from: client, to: rawCount, by: clients) { try await sender.send(message, date: Date()) }
                    }
                }
                try await group.waitForAll()
            }
        }
        let bytes = try message.rendered(date: Date()).utf8.count
        // The notifier: one invoice.finalized per invoice, two emails each (finance, tenant).
        let ids = chosen.map { "invoice.finalized:\($0.id.uuidString.lowercased())" }
        let seconds = try await timed {
            try await publish(chosen.map { .invoiceFinalized(BillingEvent.InvoiceFinalized($0)) }, on: broker)
            try await waitForSent(ids, count: chosen.count * 2, pool: pool)
        }
        print(
            "notify emails: \(chosen.count * 2) emails with a PDF (\(bytes / 1024) KiB each) in \(String(format: "%.1f", seconds)) s = "
                + "\(BenchSupport.format(Double(chosen.count * 2) / seconds))/s through the notifier vs raw SMTP sends of the same message "
                + "\(BenchSupport.format(Double(rawCount) / rawSeconds))/s (\(clients) clients) = "
                + "\(BenchSupport.format(100 * rawSeconds / seconds * Double(chosen.count * 2) / Double(rawCount)))%")
        BenchSupport.record(
            "notify", "invoice emails with PDF", value: Double(chosen.count * 2) / seconds, unit: "emails/s", raw: Double(rawCount) / rawSeconds,
            rawLabel: "libcurl SMTP sends")
    }

    private func deliveries(pool: PostgresPool, broker: AMQPConnection) async throws {
        let tenant = try await pool.query(
            "INSERT INTO tenants (name, billing_email) VALUES ('notify bench', 'bench@tally.localhost') RETURNING id")[0].decode(0, as: UUID.self)
        guard
            let (_, secret) = try await WebhookEndpointStore(pool: pool).create(
                tenant: tenant, url: receiver + "/hook", events: ["alert.triggered"], description: "benchmark", limit: 1)
        else { throw ValidationError("the benchmark's new tenant already has a webhook endpoint") }
        let events = (0..<webhooks).map { index in
            BillingEvent.alertTriggered(
                .init(
                    tenantID: tenant, occurredAt: Date(), alertID: UUID(), alertKind: "threshold", thresholdKey: "threshold:\(index)",
                    metric: "api_calls", value: "\(index)", threshold: "1", quota: nil, periodStart: Date(), periodEnd: Date(),
                    channels: ["webhook"]))
        }
        // Raw: the same signed body POSTed by `clients` bare HTTP clients.
        let body = try events[0].encoded()
        let rawSeconds = try await timed {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        let http = try HTTPClient()
                        for _ in stride(from: client, to: webhooks, by: clients) {
                            let signature = WebhookSignature.value(
                                body: body, timestamp: Int64(Date().timeIntervalSince1970), secrets: [secret.value])
                            let response = try await http.send(
                                .init(
                                    method: .post, url: receiver + "/hook",
                                    headers: ["Content-Type": "application/json", WebhookSignature.header: signature], body: Data(body)))
                            guard response.isSuccess else { throw ValidationError("the receiver answered \(response.status)") }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let seconds = try await timed {
            try await publish(events, on: broker)
            try await waitForSent(events.map(\.id), count: webhooks, pool: pool)
        }
        print(
            "notify webhooks: \(webhooks) signed deliveries in \(String(format: "%.1f", seconds)) s = "
                + "\(BenchSupport.format(Double(webhooks) / seconds))/s through the notifier vs raw POSTs "
                + "\(BenchSupport.format(Double(webhooks) / rawSeconds))/s (\(clients) clients) = \(BenchSupport.format(100 * rawSeconds / seconds))%"
        )
        BenchSupport.record(
            "notify", "signed webhooks", value: Double(webhooks) / seconds, unit: "deliveries/s", raw: Double(webhooks) / rawSeconds,
            rawLabel: "bare POSTs")
    }

    private func publish(_ events: [BillingEvent], on broker: AMQPConnection) async throws {
        for chunk in stride(from: 0, to: events.count, by: 100) {
            let messages = try events[chunk..<min(chunk + 100, events.count)].map { event in
                OutgoingMessage(
                    exchange: "", routingKey: queue, body: try event.encoded(),
                    properties: AMQPProperties(contentType: "application/json", messageID: event.id, persistent: true), mandatory: true)
            }
            guard try await broker.publish(messages).allSatisfy({ $0 == .confirmed }) else { throw ValidationError("the broker refused events") }
        }
    }

    private func waitForSent(_ eventIDs: [String], count: Int, pool: PostgresPool) async throws {
        while try await pool.query(
            "SELECT count(*) FROM notifications WHERE event_id = ANY($1::text[]) AND status = 'sent'", [PostgresTextArray(eventIDs)]
        )[0].decode(0, as: Int.self) < count {
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    private func timed(_ body: () async throws -> Void) async throws -> Double {
        let start = ContinuousClock.now
        try await body()
        return BenchSupport.seconds(ContinuousClock.now - start)
    }
}
