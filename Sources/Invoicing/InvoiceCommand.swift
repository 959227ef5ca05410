import Foundation

/// One `invoice.generate` command (on `tally.commands`, queue `invoicer.commands`):
/// issue the invoice of one subscription period for a billing run.
public struct InvoiceCommand: Codable, Sendable, Equatable {
    public let billingRunID: UUID
    public let subscriptionID: UUID
    public let periodIndex: Int64
    /// `adjustment`: bill the late usage of an ended subscription on an invoice of its
    /// own (`periodIndex` is then one past its last period); absent: the period's invoice.
    public let kind: String?

    public init(billingRunID: UUID, subscriptionID: UUID, periodIndex: Int64, kind: String? = nil) {
        self.billingRunID = billingRunID
        self.subscriptionID = subscriptionID
        self.periodIndex = periodIndex
        self.kind = kind
    }

    public var isAdjustment: Bool { kind == "adjustment" }

    enum CodingKeys: String, CodingKey {
        case kind
        case billingRunID = "billing_run_id"
        case subscriptionID = "subscription_id"
        case periodIndex = "period_index"
    }
}
