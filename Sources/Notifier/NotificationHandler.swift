import CurlClient
import Foundation
import InvoicePDF
import Invoicing
import Logging
import Notifications
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// What one Notifier consumer holds: its own PostgreSQL connection, mail client, HTTP
/// client and name resolver (each on a thread of its own, so one slow server or DNS
/// lookup holds up only this consumer).
struct NotifierSession: Sendable {
    let database: PostgresConnection
    let smtp: SMTPClient
    /// Webhooks of one event go out this many at a time, one client (and thread) each.
    let webhookClients: [HTTPClient]
    let addresses: WebhookAddressPolicy
}

/// The Notifier's work on one billing event (the loop around it is the shared
/// `QueueWorker`): plan who is told (`NotificationPlanner`), then for each notification
/// claim it, send it (email over SMTP, signed webhook over HTTP) and record the outcome.
/// Notifications already sent are skipped, so a redelivered or replayed event sends only
/// what had not gone out. Outcomes:
/// - the mail server unreachable: the event is held (no attempt is used up) until it is back;
/// - a failure that may pass (a receiver answering 500, a timeout, SMTP 4xx): the event is
///   retried through the retry queues with backoff, then parked;
/// - only failures that cannot pass (a refused address, SMTP 5xx, an unreadable event): parked now.
struct NotificationHandler: QueueWorkHandler {
    let configuration: NotifierConfiguration
    let database: PostgresConfiguration
    let metrics: NotifierMetrics
    let email: NotificationEmail
    /// Endpoints that hung lately, shared by this process's consumers.
    let cooling = EndpointCooling()

    init(configuration: NotifierConfiguration, metrics: NotifierMetrics) throws {
        self.configuration = configuration
        var database = try PostgresConfiguration(url: configuration.databaseURL)
        // Delivery records may lose their last moments in a database crash: that resends, never
        // loses (see NotificationRecords); not waiting for the flush spares two per notification.
        database.sessionSettings["synchronous_commit"] = "off"
        self.database = database
        self.metrics = metrics
        self.email = NotificationEmail(sellerName: configuration.seller.name, sellerEmail: configuration.seller.email)
    }

    func openSession(consumer: Int, logger: Logger, shouldStop: @escaping @Sendable () -> Bool) async -> NotifierSession? {
        guard
            let database = await PostgresConnection.connectRetrying(
                configuration: database, logger: logger, shouldStop: shouldStop)
        else { return nil }
        do {
            // A receiver's answer is judged by its status: its body is not read (a long one is
            // not an error, and a slow one does not turn a 200 into a timeout).
            return NotifierSession(
                database: database, smtp: try SMTPClient(configuration: configuration.smtp),
                webhookClients: try (0..<Self.parallelWebhooks).map { _ in
                    try HTTPClient(configuration: .init(maxResponseBytes: 64 * 1024, truncatesLargeBodies: true, readsBody: false))
                },
                addresses: WebhookAddressPolicy(allowPrivate: configuration.allowPrivateWebhooks))
        } catch {
            logger.critical("cannot start libcurl", metadata: ["error": "\(error)"])
            await database.close()
            return nil
        }
    }

    func closeSession(_ session: NotifierSession) async {
        await session.database.close()
    }

    func process(_ deliveries: [Delivery], in session: NotifierSession, logger: Logger) async -> WorkOutcome {
        var poisoned: [WorkOutcome.Poisoned] = []
        for delivery in deliveries {
            let event: BillingEvent
            do {
                event = try BillingEvent.decode(delivery.body)
            } catch {
                poisoned.append(.init(deliveryTag: delivery.deliveryTag, reason: "not a billing event: \(error.reason)"))
                continue
            }
            var logger = logger
            logger[metadataKey: "event.id"] = "\(event.id)"
            logger[metadataKey: "tenant.id"] = "\(event.tenantID)"
            metrics.event()
            switch await deliver(event, session: session, logger: logger) {
            case .done: continue
            case .poison(let reason): poisoned.append(.init(deliveryTag: delivery.deliveryTag, reason: reason))
            case .failure(let failure): return WorkOutcome(poisoned: poisoned, failure: failure)
            }
        }
        return WorkOutcome(poisoned: poisoned)
    }

    func didPark(_ delivery: Delivery, reason: String, in session: NotifierSession, logger: Logger) async {
        guard let event = try? BillingEvent.decode(delivery.body),
            let unsent = try? await NotificationRecords.unsentByChannel(ofEvent: event.id, on: session.database)
        else { return }
        for (channel, count) in unsent { metrics.parked(channel: channel, eventType: event.type, count) }
    }

    private enum EventOutcome {
        case done
        case poison(String)
        case failure(WorkFailure)
    }

    /// Why one notification did not go out.
    private enum SendFailure: Error {
        /// The mail server could not be reached: every email would fail alike.
        case mailServerDown(String)
        /// Another attempt may work.
        case transient(String, code: Int?)
        /// No attempt can work until someone changes something.
        case permanent(String, code: Int?)

        var text: String {
            switch self {
            case .mailServerDown(let text), .transient(let text, _), .permanent(let text, _): text
            }
        }
    }

    private func deliver(_ event: BillingEvent, session: NotifierSession, logger: Logger) async -> EventOutcome {
        let database = session.database
        let tenant: Tenant
        let targets: [WebhookTarget]
        do {
            guard let found = try await TenantStore.tenant(id: event.tenantID, on: database) else {
                return .poison("tenant \(event.tenantID) does not exist (deleted?); nothing to notify")
            }
            tenant = found
            targets = try await database.withTransaction { try WebhookEndpointStore.targets(tenant: event.tenantID, eventType: event.type, on: $0) }
        } catch {
            return .failure(.classifying(error))
        }
        let plan = NotificationPlanner.plan(
            event, tenantEmail: tenant.billingEmail, financeEmail: configuration.financeEmail, endpoints: targets.map(\.endpoint))
        var invoice: InvoiceAttachment?
        var failures: [SendFailure] = []
        var mailServerDown: String?
        /// Claims `notification`: true to send it now; false when it was sent before (or
        /// another consumer holds it, a failure to retry).
        func claim(_ notification: PlannedNotification) async throws -> Bool {
            switch try await NotificationRecords.claim(notification.record, eventID: event.id, eventType: event.type, tenant: tenant.id, on: database)
            {
            case .alreadySent:
                metrics.skipped(notification.channel.rawValue)
                return false
            case .busy:
                failures.append(.transient("\(Self.describe(notification)) is being sent by another consumer", code: nil))
                return false
            case .claimed:
                return true
            }
        }
        /// Records what sending `notification` gave.
        func record(_ notification: PlannedNotification, _ outcome: Result<Int?, SendFailure>) async throws {
            switch outcome {
            case .success(let code):
                try await NotificationRecords.markSent(notification.dedupKey, responseCode: code, on: database)
                metrics.sent(notification.channel.rawValue)
                if notification.channel == .email { metrics.mailServer(up: true) }
                logger.info("notification sent", metadata: ["notification": "\(Self.describe(notification))"])
            case .failure(let failure):
                let code: Int? =
                    if case .transient(_, let code) = failure { code } else if case .permanent(_, let code) = failure { code } else { nil }
                try await NotificationRecords.markFailed(notification.dedupKey, error: failure.text, responseCode: code, on: database)
                metrics.failed(notification.channel.rawValue)
                logger.warning("notification failed", metadata: ["notification": "\(Self.describe(notification))", "error": "\(failure.text)"])
                if case .mailServerDown(let reason) = failure {
                    metrics.mailServer(up: false)
                    mailServerDown = reason
                } else {
                    failures.append(failure)
                }
            }
        }
        do {
            // Emails first, one by one (with the mail server unreachable every email would
            // fail alike; webhooks still go).
            for notification in plan where notification.channel == .email && mailServerDown == nil {
                guard try await claim(notification) else { continue }
                try await record(notification, await sendEmail(event, notification, tenant: tenant, invoice: &invoice, session: session))
            }
            // Then webhooks, a few at a time, the least-tried first, for at most
            // `webhookBudget`: a tenant's endpoints that hang (16 × 10 s) held every event
            // behind this one on this consumer for minutes, other tenants' invoice emails
            // included. What the budget leaves goes first on the event's next attempt.
            let (tried, sent) = try await NotificationRecords.attempts(ofEvent: event.id, on: database)
            var waiting = plan.filter { $0.channel == .webhook }.enumerated()
                .sorted { (tried[$0.element.dedupKey] ?? 0, $0.offset) < (tried[$1.element.dedupKey] ?? 0, $1.offset) }.map(\.element)
            // Endpoints that hung lately are not waited on again: this attempt fails for them
            // at once (see `EndpointCooling`), and the retry queues bring the event back. One
            // this event already delivered to goes on to its claim, which skips it as sent.
            let cooled = waiting.filter { !sent.contains($0.dedupKey) && $0.endpointID.flatMap { cooling.cooling($0) } != nil }
            waiting.removeAll { notification in cooled.contains { $0.dedupKey == notification.dedupKey } }
            if !cooled.isEmpty {
                metrics.cooledWebhooks(cooled.count)
                failures.append(
                    .transient(
                        "\(cooled.map(Self.describe).joined(separator: ", ")) hung on a delivery less than "
                            + "\(EndpointCooling.period) ago: not tried in this attempt", code: nil))
            }
            // A round starts only while a whole one (each webhook's 10 s timeout) fits in the
            // budget; the first always does.
            let deadline = ContinuousClock.now + Self.webhookBudget
            var rounds = 0
            while !waiting.isEmpty, rounds == 0 || ContinuousClock.now + Self.webhookTimeout <= deadline {
                rounds += 1
                // Claimed ones are sent and recorded even when a later claim throws: left
                // claimed, they would wait out their lease as "busy", using up attempts.
                var round: [PlannedNotification] = []
                var claimError: (any Error)?
                while round.count < session.webhookClients.count, !waiting.isEmpty {
                    let notification = waiting.removeFirst()
                    do {
                        if try await claim(notification) { round.append(notification) }
                    } catch {
                        claimError = error
                        break
                    }
                }
                let outcomes = await withTaskGroup(of: (Int, Result<Int?, SendFailure>).self) { group in
                    for (index, notification) in round.enumerated() {
                        let target = targets.first { $0.endpoint.id == notification.endpointID }
                        let client = session.webhookClients[index]
                        group.addTask {
                            let started = ContinuousClock.now
                            let outcome = await sendWebhook(event, notification, target: target, client: client, addresses: session.addresses)
                            if let endpoint = notification.endpointID {
                                let (succeeded, answered) =
                                    switch outcome {
                                    case .success: (true, true)
                                    case .failure(.transient(_, let code)), .failure(.permanent(_, let code)): (false, code != nil)
                                    case .failure(.mailServerDown): (false, false)
                                    }
                                if cooling.record(endpoint, succeeded: succeeded, answered: answered, elapsed: .now - started) {
                                    logger.warning(
                                        "webhook endpoint hung: not tried again for \(EndpointCooling.period)",
                                        metadata: ["notification": "\(Self.describe(notification))"])
                                }
                            }
                            return (index, outcome)
                        }
                    }
                    var outcomes: [Int: Result<Int?, SendFailure>] = [:]
                    for await (index, outcome) in group { outcomes[index] = outcome }
                    return outcomes
                }
                // Every outcome is recorded before an error is thrown: a delivered webhook left
                // unmarked would be sent again when its lease ran out.
                var recordError: (any Error)?
                for (index, notification) in round.enumerated() {
                    do {
                        try await record(notification, outcomes[index] ?? .failure(.transient("no outcome", code: nil)))
                    } catch {
                        recordError = recordError ?? error
                    }
                }
                if let error = claimError ?? recordError { throw error }
            }
            if !waiting.isEmpty {
                failures.append(
                    .transient(
                        "\(waiting.count) webhook(s) not tried in this attempt: the event's other webhooks took its \(Self.webhookBudget); "
                            + "they go first on the next attempt", code: nil))
            }
        } catch {
            return .failure(.classifying(error))
        }
        if let mailServerDown { return .failure(.dependencyDown("mail server (\(mailServerDown))")) }
        guard !failures.isEmpty else { return .done }
        let reasons = failures.map(\.text).joined(separator: "; ")
        let permanent = failures.allSatisfy { if case .permanent = $0 { true } else { false } }
        return permanent ? .poison(reasons) : .failure(.failed(reasons))
    }

    /// The invoice and its PDF, read and drawn once per event (finance and tenant get the same).
    struct InvoiceAttachment {
        let view: InvoiceView
        let pdf: [UInt8]
    }

    private func sendEmail(
        _ event: BillingEvent, _ notification: PlannedNotification, tenant: Tenant, invoice: inout InvoiceAttachment?,
        session: NotifierSession
    ) async -> Result<Int?, SendFailure> {
        let recipient = NotificationEmail.Recipient(name: tenant.name, email: tenant.billingEmail)
        let message: MailMessage
        switch event {
        case .invoiceFinalized(let finalized):
            if invoice == nil {
                do {
                    guard let view = try await session.database.withTransaction({ try InvoiceStore.invoice(id: finalized.invoiceID, on: $0) })
                    else { return .failure(.permanent("invoice \(finalized.invoiceID) does not exist", code: nil)) }
                    let pdf = try InvoiceDocument(
                        invoice: view, seller: configuration.seller.party,
                        customer: view.billedTo.map { .init(name: $0.name, email: $0.email) } ?? .init(name: tenant.name, email: tenant.billingEmail)
                    ).render()
                    invoice = InvoiceAttachment(view: view, pdf: pdf)
                } catch {
                    return .failure(.transient("could not read or draw the invoice: \(error)", code: nil))
                }
            }
            guard let invoice else { return .failure(.transient("no invoice", code: nil)) }
            message = email.invoice(invoice.view, pdf: invoice.pdf, tenant: recipient, to: notification)
        case .invoicePaymentFailed(let failed):
            message = email.paymentFailed(failed, tenant: recipient, to: notification)
        case .alertTriggered(let alert):
            message = email.alert(alert, tenant: recipient, to: notification)
        case .quotaExceeded(let quota):
            message = email.quotaExceeded(quota, tenant: recipient, to: notification)
        }
        do {
            try await session.smtp.send(message, date: Date())
            return .success(250)
        } catch {
            switch error.code {
            // Refused or unreachable: the server is down for every message. A timeout or a TLS
            // or login failure may be this message's own (or pass): retried through the queues.
            case .couldNotConnect: return .failure(.mailServerDown(String(describing: error)))
            case .rejected where error.isTransient: return .failure(.transient("mail server refused: \(error)", code: error.responseCode))
            case .rejected, .invalidRequest: return .failure(.permanent("email refused: \(String(reflecting: error))", code: error.responseCode))
            default: return .failure(.transient("email failed: \(error)", code: error.responseCode))
            }
        }
    }

    /// Webhooks of one event sent at once (one HTTP client and thread each per consumer).
    static let parallelWebhooks = 4
    /// How long one attempt of an event spends on its webhooks before leaving the rest to
    /// its next attempt: rounds start while a whole one fits.
    static let webhookBudget = Duration.seconds(20)
    /// A webhook's whole timeout (connecting included).
    static let webhookTimeout = Duration.seconds(10)

    private func sendWebhook(
        _ event: BillingEvent, _ notification: PlannedNotification, target: WebhookTarget?, client: HTTPClient,
        addresses: WebhookAddressPolicy
    ) async -> Result<Int?, SendFailure> {
        guard let target else { return .failure(.permanent("\(Self.describe(notification)) is gone", code: nil)) }
        let checked: WebhookAddressPolicy.Checked
        do {
            checked = try await addresses.check(target.endpoint.url)
        } catch {
            let text = "\(Self.describe(notification)): URL refused: \(error)"
            return .failure(error.isPermanent ? .permanent(text, code: nil) : .transient(text, code: nil))
        }
        let body: [UInt8]
        do {
            body = try event.encoded()
        } catch {
            return .failure(.permanent("event cannot be encoded: \(error)", code: nil))
        }
        let timestamp = Int64(Date().timeIntervalSince1970)
        var request = HTTPClient.Request(
            method: .post, url: checked.url,
            headers: [
                "Content-Type": "application/json", "User-Agent": "Tally-Webhooks/1", "Tally-Event-Id": event.id, "Tally-Event-Type": event.type,
                WebhookSignature.header: WebhookSignature.value(
                    body: body, timestamp: timestamp, secrets: [target.secret] + (target.previousSecret.map { [$0] } ?? [])),
            ],
            body: Data(body), connectTimeout: .seconds(5), timeout: Self.webhookTimeout)
        request.pinnedAddresses = checked.pinned
        do {
            let response = try await client.send(request)
            guard response.isSuccess else {
                return .failure(.transient("\(Self.describe(notification)) answered HTTP \(response.status)", code: response.status))
            }
            return .success(response.status)
        } catch {
            return .failure(.transient("\(Self.describe(notification)) not delivered: \(error)", code: nil))
        }
    }

    /// A notification named for logs and park reasons: an email by its address, a webhook
    /// by its endpoint id — never its URL, which may carry the receiver's own secret token.
    static func describe(_ notification: PlannedNotification) -> String {
        switch notification.channel {
        case .email: "email to \(notification.recipient)"
        case .webhook: "webhook endpoint \(notification.endpointID?.uuidString.lowercased() ?? "-")"
        }
    }
}
