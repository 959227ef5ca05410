import Foundation

/// A message on the `billing.events` exchange (routing key = its `type`), schema
/// version 1: what happened to a tenant's billing that people or programs are told
/// about. The Aggregator (quota, alerts), the Invoicer (invoices) and the Stripe event
/// applier (payments) write them to the outbox; the Notifier reads them and turns each
/// into emails and webhook deliveries. Webhook receivers get this same JSON.
///
/// Every event has an `id` that is also its AMQP `message_id` and outbox dedup key:
/// stable across re-sends, so "once per period" is a unique constraint and a consumer
/// can tell a redelivery from a new event.
public enum BillingEvent: Sendable, Equatable {
    case invoiceFinalized(InvoiceFinalized)
    case invoicePaymentFailed(InvoicePaymentFailed)
    case alertTriggered(AlertTriggered)
    case quotaExceeded(QuotaExceeded)

    /// The schema version this code writes and reads.
    public static let version = 1

    /// Every event type, as routing keys.
    public static let types = [InvoiceFinalized.type, InvoicePaymentFailed.type, AlertTriggered.type, QuotaExceeded.type]

    /// The routing key and `type` field, e.g. `invoice.finalized`.
    public var type: String { payload.eventType }

    /// The dedup key and AMQP message id.
    public var id: String { payload.id }

    /// The tenant the event is about.
    public var tenantID: UUID { payload.tenantID }

    /// When it happened.
    public var occurredAt: Date { payload.occurredAt }

    private var payload: any BillingEventPayload {
        switch self {
        case .invoiceFinalized(let event): event
        case .invoicePaymentFailed(let event): event
        case .alertTriggered(let event): event
        case .quotaExceeded(let event): event
        }
    }

    /// The message body: the payload's fields plus `type` and `version`.
    public func encoded() throws -> [UInt8] {
        try MessageCoding.encode(Envelope(payload: payload))
    }

    /// Reads a body written by `encoded()`; throws a `MessageDecodingError` naming what
    /// is wrong (not JSON, an unknown type or version, a missing or malformed field).
    public static func decode(_ body: [UInt8]) throws(MessageDecodingError) -> BillingEvent {
        let header: MessageHeader
        do {
            header = try MessageCoding.decode(MessageHeader.self, from: body)
        } catch {
            throw MessageDecodingError.explaining(error)
        }
        guard header.version == version else {
            throw MessageDecodingError("billing event version \(header.version) is not supported (this build reads version \(version))")
        }
        do {
            switch header.type {
            case InvoiceFinalized.type: return .invoiceFinalized(try MessageCoding.decode(InvoiceFinalized.self, from: body))
            case InvoicePaymentFailed.type: return .invoicePaymentFailed(try MessageCoding.decode(InvoicePaymentFailed.self, from: body))
            case AlertTriggered.type: return .alertTriggered(try MessageCoding.decode(AlertTriggered.self, from: body))
            case QuotaExceeded.type: return .quotaExceeded(try MessageCoding.decode(QuotaExceeded.self, from: body))
            default: throw MessageDecodingError("unknown billing event type \"\(header.type)\"")
            }
        } catch let error as MessageDecodingError {
            throw error
        } catch {
            throw MessageDecodingError.explaining(error)
        }
    }
}

/// What every billing event carries.
protocol BillingEventPayload: Codable, Sendable {
    static var type: String { get }
    var id: String { get }
    var tenantID: UUID { get }
    var occurredAt: Date { get }
}

extension BillingEventPayload {
    var eventType: String { Self.type }
}

/// Writes a payload's fields and, beside them, `type` and `version`.
private struct Envelope: Encodable {
    let payload: any BillingEventPayload

    enum Keys: String, CodingKey { case type, version }

    func encode(to encoder: any Encoder) throws {
        try payload.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(payload.eventType, forKey: .type)
        try container.encode(BillingEvent.version, forKey: .version)
    }
}

extension BillingEvent {
    /// An invoice was issued (numbered, final): finance and the tenant get it by email
    /// with its PDF, webhooks subscribed to `invoice.finalized` get this event.
    public struct InvoiceFinalized: BillingEventPayload, Equatable {
        public static let type = "invoice.finalized"
        public private(set) var id: String
        public let tenantID: UUID
        /// When it was issued.
        public let occurredAt: Date
        public let invoiceID: UUID
        /// `INV-YYYY-NNNNNN`.
        public let number: String
        /// `period`, or `adjustment` (late usage of an ended subscription).
        public let kind: String
        /// ISO 4217, lower case; amounts are in its minor unit.
        public let currency: String
        public let periodStart: Date
        public let periodEnd: Date
        public let subtotalCents: Int64
        public let taxCents: Int64
        public let totalCents: Int64
        /// When payment is due (issue date + payment terms).
        public let dueAt: Date?
        /// Set on an email sent again on request (`notifier resend`): only these get it, and
        /// no webhook fires; nil on the invoice's own event.
        public private(set) var resendTo: [Audience]?

        /// Who receives an invoice's email.
        public enum Audience: String, Codable, Sendable, CaseIterable {
            case tenant, finance
        }

        /// The event of invoice `invoiceID`; its id is `invoice.finalized:<invoice id>`.
        public init(
            tenantID: UUID, occurredAt: Date, invoiceID: UUID, number: String, kind: String, currency: String, periodStart: Date,
            periodEnd: Date, subtotalCents: Int64, taxCents: Int64, totalCents: Int64, dueAt: Date?
        ) {
            self.id = "\(Self.type):\(invoiceID.uuidString.lowercased())"
            self.tenantID = tenantID
            self.occurredAt = occurredAt
            self.invoiceID = invoiceID
            self.number = number
            self.kind = kind
            self.currency = currency
            self.periodStart = periodStart
            self.periodEnd = periodEnd
            self.subtotalCents = subtotalCents
            self.taxCents = taxCents
            self.totalCents = totalCents
            self.dueAt = dueAt
        }

        /// Whether this is an adjustment invoice (late usage of an ended subscription).
        public var isAdjustment: Bool { kind == "adjustment" }

        /// The event that emails this invoice again to `audiences`: its own id
        /// (`invoice.finalized:<invoice id>:resend:<milliseconds>`), so the Notifier's dedup
        /// of the first emails does not hold it back.
        public func resent(to audiences: [Audience], at moment: Date) -> InvoiceFinalized {
            var copy = self
            copy.id = "\(id):resend:\(Int64((moment.timeIntervalSince1970 * 1000).rounded()))"
            copy.resendTo = audiences
            return copy
        }

        enum CodingKeys: String, CodingKey {
            case id, number, kind, currency
            case tenantID = "tenant_id"
            case occurredAt = "occurred_at"
            case invoiceID = "invoice_id"
            case periodStart = "period_start"
            case periodEnd = "period_end"
            case subtotalCents = "subtotal_cents"
            case taxCents = "tax_cents"
            case totalCents = "total_cents"
            case dueAt = "due_at"
            case resendTo = "resend_to"
        }
    }

    /// Stripe could not collect an invoice: the tenant is told what failed and what to do.
    public struct InvoicePaymentFailed: BillingEventPayload, Equatable {
        public static let type = "invoice.payment_failed"
        public let id: String
        public let tenantID: UUID
        public let occurredAt: Date
        public let invoiceID: UUID
        public let number: String
        public let currency: String
        /// What is still owed, in the currency's minor unit.
        public let amountDueCents: Int64
        /// How many times Stripe has tried, when it said.
        public let attemptCount: Int?
        /// When Stripe tries again; nil when it will not.
        public let nextAttemptAt: Date?
        /// Stripe's reason, e.g. "Your card was declined.", when it gave one.
        public let failureMessage: String?
        /// The Stripe event this comes from.
        public let stripeEventID: String

        /// The event of Stripe event `stripeEventID`; its id is `invoice.payment_failed:<stripe event id>`.
        public init(
            tenantID: UUID, occurredAt: Date, invoiceID: UUID, number: String, currency: String, amountDueCents: Int64,
            attemptCount: Int?, nextAttemptAt: Date?, failureMessage: String?, stripeEventID: String
        ) {
            self.id = "\(Self.type):\(stripeEventID)"
            self.tenantID = tenantID
            self.occurredAt = occurredAt
            self.invoiceID = invoiceID
            self.number = number
            self.currency = currency
            self.amountDueCents = amountDueCents
            self.attemptCount = attemptCount
            self.nextAttemptAt = nextAttemptAt
            self.failureMessage = failureMessage
            self.stripeEventID = stripeEventID
        }

        enum CodingKeys: String, CodingKey {
            case id, number, currency
            case tenantID = "tenant_id"
            case occurredAt = "occurred_at"
            case invoiceID = "invoice_id"
            case amountDueCents = "amount_due_cents"
            case attemptCount = "attempt_count"
            case nextAttemptAt = "next_attempt_at"
            case failureMessage = "failure_message"
            case stripeEventID = "stripe_event_id"
        }
    }

    /// A tenant's usage alert crossed its threshold (once per alert, period and threshold);
    /// sent by email and/or webhook as the alert's `channels` say.
    public struct AlertTriggered: BillingEventPayload, Equatable {
        public static let type = "alert.triggered"
        public let id: String
        public let tenantID: UUID
        public let occurredAt: Date
        public let alertID: UUID
        /// `threshold`, `quota` or `anomaly`.
        public let alertKind: String
        public let metric: String
        /// The metric's value over the period when it fired, exact decimal text.
        public let value: String
        /// The threshold value or percentage, exact decimal text; nil for anomalies.
        public let threshold: String?
        /// The plan's quota for the metric, when it has one.
        public let quota: String?
        public let periodStart: Date
        public let periodEnd: Date
        /// `email` and/or `webhook`.
        public let channels: [String]

        /// The firing of `alertID` for the period starting at `periodStart` and threshold `thresholdKey`.
        public init(
            tenantID: UUID, occurredAt: Date, alertID: UUID, alertKind: String, thresholdKey: String, metric: String, value: String,
            threshold: String?, quota: String?, periodStart: Date, periodEnd: Date, channels: [String]
        ) {
            // The form written before messages were typed, kept: ids are dedup keys (see below).
            self.id = "\(Self.type):\(alertID.uuidString):\(MessageCoding.keyTime(periodStart)):\(thresholdKey)"
            self.tenantID = tenantID
            self.occurredAt = occurredAt
            self.alertID = alertID
            self.alertKind = alertKind
            self.metric = metric
            self.value = value
            self.threshold = threshold
            self.quota = quota
            self.periodStart = periodStart
            self.periodEnd = periodEnd
            self.channels = channels
        }

        enum CodingKeys: String, CodingKey {
            case id, metric, value, threshold, quota, channels
            case tenantID = "tenant_id"
            case occurredAt = "occurred_at"
            case alertID = "alert_id"
            case alertKind = "alert_kind"
            case periodStart = "period_start"
            case periodEnd = "period_end"
        }
    }

    /// A metric went over its plan's quota in a period (once per metric and period).
    public struct QuotaExceeded: BillingEventPayload, Equatable {
        public static let type = "quota.exceeded"
        public let id: String
        public let tenantID: UUID
        public let occurredAt: Date
        public let metric: String
        /// Exact decimal text.
        public let value: String
        public let quota: String
        /// `hard` (requests are refused) or `soft` (billed as overage).
        public let enforcement: String
        public let periodStart: Date
        public let periodEnd: Date

        /// The crossing of `metric`'s quota in the period starting at `periodStart`.
        public init(
            tenantID: UUID, occurredAt: Date, metric: String, value: String, quota: String, enforcement: String, periodStart: Date,
            periodEnd: Date
        ) {
            // The id is what keeps this event to once per period (the outbox's message id and
            // the notifications' keys): it keeps the upper-case tenant id it was first written
            // with, or every tenant over a quota now would be told again.
            self.id = "\(Self.type):\(tenantID.uuidString):\(metric):\(MessageCoding.keyTime(periodStart))"
            self.tenantID = tenantID
            self.occurredAt = occurredAt
            self.metric = metric
            self.value = value
            self.quota = quota
            self.enforcement = enforcement
            self.periodStart = periodStart
            self.periodEnd = periodEnd
        }

        enum CodingKeys: String, CodingKey {
            case id, metric, value, quota, enforcement
            case tenantID = "tenant_id"
            case occurredAt = "occurred_at"
            case periodStart = "period_start"
            case periodEnd = "period_end"
        }
    }
}
