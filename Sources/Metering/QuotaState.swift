import Foundation
import UsageEvents

/// One tenant's usage against its quotas in the current billing period, as the
/// Aggregator broadcasts it after each commit on the `quota.state` fanout exchange
/// (JSON body, `x-tally-schema: quota_state.v1`). Every process that enforces hard
/// limits keeps the newest state per tenant in a `QuotaView`, so a quota decision
/// never queries the database. One message carries the states of every tenant of a
/// committed batch as a JSON array (thousands of tenants per batch would otherwise be
/// thousands of messages); a single object is read too. A state holds the metrics the
/// batch counted (a view merges them into what it holds for the period), each with the
/// period's event count of the metric, which orders two positions of it.
///
/// ```json
/// {"tenant_id": "…", "as_of": "2026-11-24T18:40:00.000000Z",
///  "period_start": "…", "period_end": "…", "subscription": "active",
///  "metrics": {"api_calls": {"enforcement": "hard", "events": 412, "quota": 1000, "used": 1000}}}
/// ```
public struct QuotaState: Sendable, Equatable, Codable {
    /// Whether the tenant has a subscription in force.
    public enum Subscription: String, Sendable, Codable {
        case active, trialing, none
    }

    /// One metric's position; `quota` is nil when the plan sets none.
    public struct Metric: Sendable, Equatable, Codable {
        public let used: Quantity
        public let quota: Quantity?
        public let enforcement: Enforcement
        /// How many events of the metric the period held when `used` was read, if known:
        /// of two positions of one metric in one period, the one with more events is the
        /// newer, whatever order their broadcasts arrive in (`QuotaView`).
        public let events: Int64?

        public init(used: Quantity, quota: Quantity?, enforcement: Enforcement, events: Int64? = nil) {
            self.used = used
            self.quota = quota
            self.enforcement = enforcement
            self.events = events
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
            if let events = metric.events {
                writer.raw(#","events":"#)
                writer.raw(String(events))
            }
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

    /// Reads a broadcast: an array of states, or one state. Read with `JSONParser`, so
    /// `used` and `quota` are parsed from their text into `Quantity`, exactly.
    public static func decodeAll(_ bytes: [UInt8]) throws -> [QuotaState] {
        switch try JSONParser.parse(bytes) {
        case .array(let values): try values.map(state(from:))
        case let value: [try state(from: value)]
        }
    }

    /// Reads the wire form of one state.
    public static func decode(_ bytes: [UInt8]) throws -> QuotaState {
        try state(from: try JSONParser.parse(bytes))
    }

    /// Why a broadcast could not be read.
    public struct DecodingProblem: Error, CustomStringConvertible {
        public let description: String
    }

    private static func state(from value: JSONValue) throws -> QuotaState {
        guard case .object(let fields) = value else { throw DecodingProblem(description: "a quota state must be a JSON object") }
        func text(_ key: String) throws -> String? {
            switch fields[key] {
            case nil, .null?: return nil
            case .string(let text)?: return text
            default: throw DecodingProblem(description: "\(key) must be a string")
            }
        }
        func date(_ key: String) throws -> Date? {
            guard let text = try text(key) else { return nil }
            guard let date = RFC3339.parse(text) else { throw DecodingProblem(description: "\(key) is not RFC 3339") }
            return date
        }
        guard let tenantText = try text("tenant_id"), let tenant = UUID(uuidString: tenantText) else {
            throw DecodingProblem(description: "tenant_id must be a uuid")
        }
        guard let asOf = try date("as_of") else { throw DecodingProblem(description: "as_of is required") }
        guard let subscriptionText = try text("subscription"), let subscription = Subscription(rawValue: subscriptionText) else {
            throw DecodingProblem(description: "subscription must be active, trialing or none")
        }
        guard case .object(let metricFields)? = fields["metrics"] else { throw DecodingProblem(description: "metrics must be an object") }
        var metrics: [String: Metric] = [:]
        for (name, value) in metricFields {
            guard case .object(let metric) = value,
                case .string(let enforcementText)? = metric["enforcement"], let enforcement = Enforcement(rawValue: enforcementText),
                case .number(let used)? = metric["used"]
            else { throw DecodingProblem(description: "metrics.\(name) needs enforcement (hard or soft) and used (a number)") }
            var events: Int64?
            switch metric["events"] {
            case nil, .null?: events = nil
            case .number(let number)?:
                guard let count = Int64(number.text), count >= 0 else {
                    throw DecodingProblem(description: "metrics.\(name).events must be a whole number of at least 0")
                }
                events = count
            default: throw DecodingProblem(description: "metrics.\(name).events must be a number")
            }
            var quota: Quantity?
            switch metric["quota"] {
            case nil, .null?: quota = nil
            case .number(let number)?: quota = try Quantity(parsingTotal: number.text)
            default: throw DecodingProblem(description: "metrics.\(name).quota must be a number")
            }
            metrics[name] = Metric(used: try Quantity(parsingTotal: used.text), quota: quota, enforcement: enforcement, events: events)
        }
        return QuotaState(
            tenantID: tenant, asOf: asOf, periodStart: try date("period_start"), periodEnd: try date("period_end"),
            subscription: subscription, metrics: metrics)
    }
}
