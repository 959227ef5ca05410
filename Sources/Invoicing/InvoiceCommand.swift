import Foundation

/// One `invoice.generate` command (on `tally.commands`, queue `invoicer.commands`):
/// issue the invoice of one subscription period for a billing run.
public struct InvoiceCommand: Codable, Sendable, Equatable {
    public let billingRunID: UUID
    public let subscriptionID: UUID
    public let periodIndex: Int64

    public init(billingRunID: UUID, subscriptionID: UUID, periodIndex: Int64) {
        self.billingRunID = billingRunID
        self.subscriptionID = subscriptionID
        self.periodIndex = periodIndex
    }

    enum CodingKeys: String, CodingKey {
        case billingRunID = "billing_run_id"
        case subscriptionID = "subscription_id"
        case periodIndex = "period_index"
    }
}
