import Foundation
import PostgresClient
import TallyMessaging
import TallyRuntime
import UsageEvents

/// A billing event the Aggregator emits on `billing.events` (routing key = `type`):
/// `quota.exceeded` or `alert.triggered`. Its `id` is the outbox message id (the dedup
/// key), stable across re-sends so the Notifier can deduplicate.
struct BillingEvent: Encodable, Sendable {
    var id = ""
    let type: String
    let tenantID: String
    let metric: String
    let value: String
    let quota: String?
    let periodStart: Date
    let periodEnd: Date
    var enforcement: String?
    let occurredAt: Date
    var alertID: String?
    var alertKind: String?
    var threshold: String?
    var channels: [String]?

    enum CodingKeys: String, CodingKey {
        case id, type, metric, value, quota, enforcement, threshold, channels
        case tenantID = "tenant_id"
        case periodStart = "period_start"
        case periodEnd = "period_end"
        case occurredAt = "occurred_at"
        case alertID = "alert_id"
        case alertKind = "alert_kind"
    }

    /// Puts the event in the outbox unless its dedup key is there already; returns 1 when new.
    init(
        type: String, tenant: UUID, metric: String, value: String, quota: String?, periodStart: Date, periodEnd: Date,
        enforcement: String? = nil, occurredAt: Date, alertID: UUID? = nil, alertKind: String? = nil, threshold: String? = nil,
        channels: [String]? = nil
    ) {
        self.type = type
        self.tenantID = tenant.uuidString.lowercased()
        self.metric = metric
        self.value = value
        self.quota = quota
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.enforcement = enforcement
        self.occurredAt = occurredAt
        self.alertID = alertID?.uuidString.lowercased()
        self.alertKind = alertKind
        self.threshold = threshold
        self.channels = channels
    }

    static func enqueue(_ event: BillingEvent, dedupKey: String, on connection: isolated PostgresConnection) throws -> Int {
        var event = event
        event.id = dedupKey
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.format(date))
        }
        let body = String(decoding: try encoder.encode(event), as: UTF8.self)
        return try Outbox.enqueue(
            exchange: ExchangeName.billingEvents, routingKey: event.type, messageID: dedupKey, body: body, on: connection)
    }
}
