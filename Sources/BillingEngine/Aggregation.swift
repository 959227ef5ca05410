/// How a billable metric turns a period's events into one value (SPEC §2
/// "Billable metrics"). An unknown metric is aggregated with `sum`.
public enum Aggregation: Sendable, Hashable, CustomStringConvertible {
    /// Sum of quantities (estimates, api_calls, documents).
    case sum
    /// Number of events, whatever their quantity.
    case count
    /// Largest quantity: gauges such as `users`, where the quantity is the seat count then.
    case max
    /// Quantity of the event with the greatest time (ties: the greatest id, then the
    /// greatest quantity, so the answer never depends on arrival order).
    case latest
    /// Number of distinct values of one metadata field; events without it are not counted.
    case uniqueCount(field: String)

    public var description: String {
        switch self {
        case .sum: "sum"
        case .count: "count"
        case .max: "max"
        case .latest: "latest"
        case .uniqueCount(let field): "unique_count(\(field))"
        }
    }
}

/// One usage event as the engine sees it: what was used, when, and the scalar
/// metadata values `unique_count` may need.
public struct UsageRecord: Sendable, Hashable {
    public let id: String
    public let time: Instant
    public let quantity: Quantity
    public let metadata: [String: String]

    public init(id: String, time: Instant, quantity: Quantity, metadata: [String: String] = [:]) {
        self.id = id
        self.time = time
        self.quantity = quantity
        self.metadata = metadata
    }
}

/// The reading that `latest` keeps: the newest event's time, id and quantity.
public struct LatestReading: Sendable, Hashable {
    public let time: Instant
    public let id: String
    public let quantity: Quantity

    public init(time: Instant, id: String, quantity: Quantity) {
        self.time = time
        self.id = id
        self.quantity = quantity
    }

    /// Whether this reading supersedes `other`: later time, then greater id, then
    /// greater quantity — a total order, so merging is order-independent even if
    /// one id were ever seen with two quantities.
    func isNewer(than other: LatestReading) -> Bool {
        (time, id, quantity) > (other.time, other.id, other.quantity)
    }
}

/// A partial aggregate: what the Aggregator stores per hour (or any slice of a
/// period) so a period's value is a merge of partials, never a rescan of events.
///
/// Merging is associative and commutative, and `PartialAggregate(of: a + b)` equals
/// `PartialAggregate(of: a).merging(PartialAggregate(of: b))` for every split of
/// the events, which the property tests check. That is why `uniqueCount` keeps the
/// distinct values themselves (counts of distinct values do not add up) and
/// `latest` keeps the event's time and id, not only its quantity.
public enum PartialAggregate: Sendable, Hashable {
    case sum(Quantity)
    case count(Int64)
    case max(Quantity?)
    case latest(LatestReading?)
    case uniqueCount(field: String, values: Set<String>)

    /// The aggregate of no events.
    public init(empty aggregation: Aggregation) {
        switch aggregation {
        case .sum: self = .sum(.zero)
        case .count: self = .count(0)
        case .max: self = .max(nil)
        case .latest: self = .latest(nil)
        case .uniqueCount(let field): self = .uniqueCount(field: field, values: [])
        }
    }

    /// The aggregate of `records`.
    public init(_ aggregation: Aggregation, of records: some Sequence<UsageRecord>) {
        self.init(empty: aggregation)
        for record in records { add(record) }
    }

    /// Which aggregation this partial belongs to.
    public var aggregation: Aggregation {
        switch self {
        case .sum: .sum
        case .count: .count
        case .max: .max
        case .latest: .latest
        case .uniqueCount(let field, _): .uniqueCount(field: field)
        }
    }

    /// Folds one more event in.
    public mutating func add(_ record: UsageRecord) {
        switch self {
        case .sum(let total): self = .sum(total + record.quantity)
        case .count(let count): self = .count(count + 1)
        case .max(let largest): self = .max(Swift.max(largest ?? record.quantity, record.quantity))
        case .latest(let reading):
            let candidate = LatestReading(time: record.time, id: record.id, quantity: record.quantity)
            if let reading, !candidate.isNewer(than: reading) { return }
            self = .latest(candidate)
        case .uniqueCount(let field, var values):
            guard let value = record.metadata[field] else { return }
            values.insert(value)
            self = .uniqueCount(field: field, values: values)
        }
    }

    /// The aggregate of both partials' events. Both must use the same aggregation.
    public func merging(_ other: PartialAggregate) -> PartialAggregate {
        switch (self, other) {
        case (.sum(let a), .sum(let b)): return .sum(a + b)
        case (.count(let a), .count(let b)): return .count(a + b)
        case (.max(let a), .max(let b)):
            guard let a, let b else { return .max(a ?? b) }
            return .max(Swift.max(a, b))
        case (.latest(let a), .latest(let b)):
            guard let a, let b else { return .latest(a ?? b) }
            return .latest(a.isNewer(than: b) ? a : b)
        case (.uniqueCount(let field, let a), .uniqueCount(let otherField, let b)) where field == otherField:
            return .uniqueCount(field: field, values: a.union(b))
        default:
            preconditionFailure("cannot merge \(aggregation) with \(other.aggregation)")
        }
    }

    /// The metric's value: 0 for a period without events.
    public var value: Quantity {
        switch self {
        case .sum(let total): total
        case .count(let count): Quantity(units: count)
        case .max(let largest): largest ?? .zero
        case .latest(let reading): reading?.quantity ?? .zero
        case .uniqueCount(_, let values): Quantity(units: Int64(values.count))
        }
    }
}

extension Sequence<PartialAggregate> {
    /// All partials merged into one, or the empty aggregate when there are none.
    public func merged(as aggregation: Aggregation) -> PartialAggregate {
        reduce(PartialAggregate(empty: aggregation)) { $0.merging($1) }
    }
}

/// Which aggregation each billable metric uses (SPEC §2 "Billable metrics");
/// an unknown metric is accepted and aggregated with `sum`.
public struct MetricCatalog: Sendable, Hashable {
    public let aggregations: [String: Aggregation]

    public init(_ aggregations: [String: Aggregation]) {
        self.aggregations = aggregations
    }

    /// The metrics ops/sql seeds: estimates, api_calls and documents are sums; users is a max.
    public static let seeded = MetricCatalog(["estimates": .sum, "api_calls": .sum, "documents": .sum, "users": .max])

    public func aggregation(for metric: String) -> Aggregation {
        aggregations[metric] ?? .sum
    }

    /// Parses the stored form (`sum`, `count`, `max`, `latest`, `unique_count` with its field).
    public static func aggregation(named name: String, field: String? = nil) -> Aggregation? {
        switch name {
        case "sum": .sum
        case "count": .count
        case "max": .max
        case "latest": .latest
        case "unique_count": field.map { .uniqueCount(field: $0) }
        default: nil
        }
    }
}
