import Foundation

/// One `invoice.generate` command (exchange `tally.commands`, queue `invoicer.commands`),
/// schema version 1: issue the invoice of one subscription period for a billing run.
/// Written by the billing-run planner into the outbox, read by `invoicer run`.
public struct InvoiceGenerateCommand: Codable, Sendable, Hashable {
    public static let type = "invoice.generate"
    /// The schema version this code writes and reads.
    public static let version = 1

    public let billingRunID: UUID
    public let subscriptionID: UUID
    public let periodIndex: Int64
    /// `adjustment`: bill the late usage of an ended subscription on an invoice of its
    /// own (`periodIndex` is then one past its last period); nil: the period's invoice.
    public let kind: String?

    public init(billingRunID: UUID, subscriptionID: UUID, periodIndex: Int64, kind: String? = nil) {
        self.billingRunID = billingRunID
        self.subscriptionID = subscriptionID
        self.periodIndex = periodIndex
        self.kind = kind
    }

    /// Whether the command asks for an adjustment invoice.
    public var isAdjustment: Bool { kind == "adjustment" }

    /// The AMQP message id and outbox dedup key: one command per run, subscription and period.
    public var messageID: String {
        "\(Self.type):\(billingRunID.uuidString.lowercased()):\(subscriptionID.uuidString.lowercased()):\(periodIndex)"
    }

    /// The message body, with `type` and `version`.
    public func encoded() throws -> [UInt8] {
        try MessageCoding.encode(Versioned(command: self))
    }

    /// Reads a body written by `encoded()`; a body without `version` (written before
    /// commands were versioned) is read as version 1.
    public static func decode(_ body: [UInt8]) throws(MessageDecodingError) -> InvoiceGenerateCommand {
        do {
            let header = try MessageCoding.decode(OptionalHeader.self, from: body)
            guard header.type ?? type == type else { throw MessageDecodingError("not an \(type) command: type \"\(header.type ?? "")\"") }
            guard header.version ?? version == version else {
                throw MessageDecodingError("\(type) version \(header.version ?? 0) is not supported (this build reads version \(version))")
            }
            return try MessageCoding.decode(InvoiceGenerateCommand.self, from: body)
        } catch let error as MessageDecodingError {
            throw error
        } catch {
            throw MessageDecodingError.explaining(error)
        }
    }

    enum CodingKeys: String, CodingKey {
        case kind
        case billingRunID = "billing_run_id"
        case subscriptionID = "subscription_id"
        case periodIndex = "period_index"
    }

    private struct OptionalHeader: Decodable {
        let type: String?
        let version: Int?
    }

    private struct Versioned: Encodable {
        let command: InvoiceGenerateCommand
        enum Keys: String, CodingKey { case type, version }

        func encode(to encoder: any Encoder) throws {
            try command.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(InvoiceGenerateCommand.type, forKey: .type)
            try container.encode(InvoiceGenerateCommand.version, forKey: .version)
        }
    }
}
