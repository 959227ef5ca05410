import Foundation
import UsageEvents

/// One tenant's usage against its quotas in the current billing period, as the
/// Aggregator broadcasts it after each commit on the `quota.state` fanout exchange
/// (JSON body, `x-tally-schema: quota_state.v1`). Every process that enforces hard
/// limits keeps the newest state per tenant in a `QuotaView`, so a quota decision
/// never queries the database. One message carries the states of every tenant of a
/// committed batch as a JSON array (thousands of tenants per batch would otherwise be
/// thousands of messages); a single object is read too.
///
/// ```json
/// {"tenant_id": "…", "as_of": "2026-11-24T18:40:00.000000Z",
///  "period_start": "…", "period_end": "…", "subscription": "active",
///  "metrics": {"api_calls": {"enforcement": "hard", "quota": 1000, "used": 1000}}}
/// ```
public struct QuotaState: Sendable, Equatable, Codable {
    /// Whether the tenant has a subscription in force.
    public enum Subscription: String, Sendable, Codable {
        case active, trialing, none
    }

    /// One metric's position; `quota` is nil when the plan sets none.
    public struct Metric: Sendable, Equatable, Codable {
        public let used: Decimal
        public let quota: Decimal?
        public let enforcement: Enforcement

        public init(used: Decimal, quota: Decimal?, enforcement: Enforcement) {
            self.used = used
            self.quota = quota
            self.enforcement = enforcement
        }

        /// At or over a hard quota: the next request is refused.
        public var isExhausted: Bool {
            guard enforcement == .hard, let quota else { return false }
            return used >= quota
        }
    }

    /// SPEC §2: `hard` refuses at the quota, `soft` allows and bills overage.
    public enum Enforcement: String, Sendable, Codable {
        case hard, soft
    }

    public static let schema = "quota_state.v1"

    public let tenantID: UUID
    public let asOf: Date
    public let periodStart: Date?
    public let periodEnd: Date?
    public let subscription: Subscription
    public let metrics: [String: Metric]

    public init(
        tenantID: UUID, asOf: Date, periodStart: Date?, periodEnd: Date?, subscription: Subscription,
        metrics: [String: Metric]
    ) {
        self.tenantID = tenantID
        self.asOf = asOf
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.subscription = subscription
        self.metrics = metrics
    }

    enum CodingKeys: String, CodingKey {
        case subscription, metrics
        case tenantID = "tenant_id"
        case asOf = "as_of"
        case periodStart = "period_start"
        case periodEnd = "period_end"
    }

    /// The wire form of one state (JSON object): decimals as JSON numbers, instants as
    /// RFC 3339, keys sorted, absent optionals left out, the tenant id in lower case.
    public func encoded() -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: 256)
        write(into: &writer)
        return writer.bytes
    }

    /// The wire form of several states: a JSON array of them. Written by hand — an
    /// Aggregator broadcasts every touched tenant's state after each commit, and
    /// `JSONEncoder` spent a quarter of its CPU on them at 40,000 tenants a batch. The
    /// same JSON as Foundation's encoder writes from `Codable` (readers take the tenant
    /// id in any case); a test compares the two.
    public static func encoded(_ states: [QuotaState]) -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: states.count * 256 + 2)
        writer.raw("[")
        for (index, state) in states.enumerated() {
            if index > 0 { writer.raw(",") }
            state.write(into: &writer)
        }
        writer.raw("]")
        return writer.bytes
    }
    private func write(into writer: inout JSONWriter) {
        writer.raw(#"{"as_of":""#)
        writer.write(date: asOf)
        writer.raw(#"","metrics":{"#)
        for (index, name) in metrics.keys.sorted().enumerated() {
            guard let metric = metrics[name] else { continue }
            if index > 0 { writer.raw(",") }
            writer.write(string: name)
            writer.raw(#":{"enforcement":"#)
            writer.write(string: metric.enforcement.rawValue)
            if let quota = metric.quota {
                writer.raw(#","quota":"#)
                writer.raw(quota.description)
            }
            writer.raw(#","used":"#)
            writer.raw(metric.used.description)
            writer.raw("}")
        }
        writer.raw("}")
        if let periodEnd {
            writer.raw(#","period_end":""#)
            writer.write(date: periodEnd)
            writer.raw("\"")
        }
        if let periodStart {
            writer.raw(#","period_start":""#)
            writer.write(date: periodStart)
            writer.raw("\"")
        }
        writer.raw(#","subscription":"#)
        writer.write(string: subscription.rawValue)
        writer.raw(#","tenant_id":""#)
        writer.write(uuid: tenantID)
        writer.raw(#""}"#)
    }

    /// Reads a broadcast: an array of states, or one state.
    public static func decodeAll(_ bytes: [UInt8]) throws -> [QuotaState] {
        guard bytes.first(where: { !$0.isJSONWhitespace }) == UInt8(ascii: "[") else { return [try decode(bytes)] }
        return try decoder().decode([QuotaState].self, from: Data(bytes))
    }

    /// Reads the wire form of one state.
    public static func decode(_ bytes: [UInt8]) throws -> QuotaState {
        try decoder().decode(QuotaState.self, from: Data(bytes))
    }

    private static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = RFC3339.parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not RFC 3339"))
            }
            return date
        }
        return decoder
    }
}

extension UInt8 {
    fileprivate var isJSONWhitespace: Bool { self == 0x20 || self == 0x0A || self == 0x0D || self == 0x09 }
}
