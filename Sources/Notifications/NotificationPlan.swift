import Crypto
import Foundation
import TallyMessaging
import TallyStore

/// One message to one recipient that a billing event asks for.
public struct PlannedNotification: Sendable, Equatable {
    public enum Channel: String, Sendable {
        case email, webhook
    }

    /// Who gets an email: the finance mailbox (a copy of every invoice) or the tenant.
    public enum Audience: String, Sendable {
        case finance, tenant
    }

    public let channel: Channel
    /// An email address, or a webhook endpoint's URL.
    public let recipient: String
    public let audience: Audience
    /// For webhooks, the endpoint.
    public let endpointID: UUID?
    /// `<event id>|<channel>|<recipient or endpoint id>`: the same event never notifies the
    /// same recipient twice through the same channel (SPEC §5).
    public let dedupKey: String

    /// The delivery as `NotificationRecords` claims and records it.
    public var record: NotificationRecords.Planned {
        NotificationRecords.Planned(dedupKey: dedupKey, channel: channel.rawValue, recipient: recipient, endpointID: endpointID)
    }

    init(event: BillingEvent, channel: Channel, recipient: String, audience: Audience, endpointID: UUID? = nil) {
        self.channel = channel
        self.recipient = recipient
        self.audience = audience
        self.endpointID = endpointID
        self.dedupKey = "\(event.id)|\(channel.rawValue)|\(endpointID?.uuidString.lowercased() ?? recipient.lowercased())"
    }

    /// A stable `Message-ID` for this notification in `domain`: a redelivered event's
    /// email carries the same one, so a receiver (or a test) can tell it is a repeat.
    public func messageID(domain: String) -> String {
        let digest = SHA256.hash(data: Data(dedupKey.utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        return "<\(digest).notification@\(domain)>"
    }
}

/// Who is told about a billing event (pure): SPEC §1, §2 alerts, §5.
///
/// - `invoice.finalized`: an email to the finance mailbox and one to the tenant's billing
///   email, each with the invoice PDF;
/// - `invoice.payment_failed`, `quota.exceeded`: an email to the tenant;
/// - `alert.triggered`: an email to the tenant when the alert's channels say `email`;
/// - every event: the tenant's active webhook endpoints subscribed to its type — for
///   alerts only when the alert's channels say `webhook`.
public enum NotificationPlanner {
    public static func plan(
        _ event: BillingEvent, tenantEmail: String, financeEmail: String, endpoints: [WebhookEndpoint]
    ) -> [PlannedNotification] {
        var plan: [PlannedNotification] = []
        var webhooks = true
        switch event {
        case .invoiceFinalized(let invoice):
            // An email sent again on request (`notifier resend`) goes only where it was asked to, and no webhook fires again.
            let audiences = invoice.resendTo ?? [BillingEvent.InvoiceFinalized.Audience.finance, .tenant]
            if audiences.contains(.finance) { plan.append(.init(event: event, channel: .email, recipient: financeEmail, audience: .finance)) }
            if audiences.contains(.tenant) { plan.append(.init(event: event, channel: .email, recipient: tenantEmail, audience: .tenant)) }
            webhooks = invoice.resendTo == nil
        case .invoicePaymentFailed, .quotaExceeded:
            plan.append(.init(event: event, channel: .email, recipient: tenantEmail, audience: .tenant))
        case .alertTriggered(let alert):
            if alert.channels.contains("email") {
                plan.append(.init(event: event, channel: .email, recipient: tenantEmail, audience: .tenant))
            }
            webhooks = alert.channels.contains("webhook")
        }
        guard webhooks else { return plan }
        for endpoint in endpoints where endpoint.tenantID == event.tenantID && endpoint.subscribes(to: event.type) {
            plan.append(.init(event: event, channel: .webhook, recipient: endpoint.url, audience: .tenant, endpointID: endpoint.id))
        }
        return plan
    }
}
