import BillingEngine
import Foundation
import PostgresClient

/// A tenant's usage over time, one value per metric and bucket (a UTC hour or day), read
/// from the hourly rollups: each bucket's value is the metric's aggregation over the events
/// of that bucket inside the range, exactly (a range starting inside a bucket counts only
/// its part of that bucket), and buckets without usage are present as zero.
public struct UsageHistory: Sendable, Equatable {
    /// The size of one bucket.
    public enum Granularity: String, Sendable, CaseIterable {
        case hour, day

        /// The bucket's length in microseconds (UTC has no daylight saving).
        public var microseconds: Int64 { self == .hour ? 3_600_000_000 : 86_400_000_000 }

        /// The start of the bucket containing `instant`.
        public func floor(_ instant: Instant) -> Instant {
            let micros = instant.microsecondsSinceEpoch
            let floored = micros >= 0 ? micros / microseconds : (micros - microseconds + 1) / microseconds
            return Instant(microsecondsSinceEpoch: floored * microseconds)
        }
    }

    /// One metric's values, one per bucket, in bucket order.
    public struct Series: Sendable, Equatable {
        public let metric: String
        public let aggregation: Aggregation
        public let values: [Quantity]
    }

    /// The buckets' starts; bucket `i` is `[buckets[i], buckets[i] + granularity)`.
    public let buckets: [Instant]
    public let granularity: Granularity
    public let series: [Series]

    /// The most buckets one read may return (six months of hours is about 4,400).
    public static let maximumBuckets = 5_000

    /// The history of `tenant` over the whole buckets that cover `span`, of `metric` only
    /// when given, else of every metric with usage in it; ordered by metric.
    public static func read(
        tenant: UUID, over span: Period, granularity: Granularity, metric: String? = nil, catalog: MetricCatalog,
        on connection: isolated PostgresConnection
    ) throws -> UsageHistory {
        let first = granularity.floor(span.start)
        var buckets: [Instant] = []
        var bucket = first
        while bucket < span.end {
            buckets.append(bucket)
            bucket = bucket.advanced(byMicroseconds: granularity.microseconds)
        }
        let end = bucket
        let index = Dictionary(uniqueKeysWithValues: buckets.enumerated().map { ($1, $0) })
        var values: [String: [Quantity]] = [:]
        if let metric { values[metric] = Array(repeating: .zero, count: buckets.count) }
        let parameters: [any PostgresEncodable] = [tenant, first.date, end.date, metric, granularity.rawValue]
        for row in try connection.query(scalarBuckets, parameters) {
            let name = try row.decode(0, as: String.self)
            let text: String?
            switch catalog.aggregation(for: name) {
            case .sum: text = row.text(2)
            case .count: text = row.text(3)
            case .max: text = row.text(4)
            case .latest: text = row.text(5)
            case .uniqueCount: continue
            }
            guard let position = index[Instant(try row.decode(1, as: Date.self))] else { continue }
            values[name, default: Array(repeating: .zero, count: buckets.count)][position] = try Quantity(parsingTotal: text ?? "0")
        }
        if catalog.aggregations.values.contains(where: { if case .uniqueCount = $0 { true } else { false } }) {
            for row in try connection.query(uniqueBuckets, parameters) {
                let name = try row.decode(0, as: String.self)
                guard case .uniqueCount = catalog.aggregation(for: name),
                    let position = index[Instant(try row.decode(1, as: Date.self))]
                else { continue }
                values[name, default: Array(repeating: .zero, count: buckets.count)][position] =
                    Quantity(units: try row.decode(2, as: Int64.self))
            }
        }
        // A range that starts or ends inside a bucket: that bucket counts only the range's
        // part of it, exactly (rollups for its whole hours, raw events for the rest), so the
        // buckets add up to the range's value.
        var partial: [(position: Int, span: Period)] = []
        if let firstBucket = buckets.first, span.start > firstBucket {
            partial.append((0, Period(start: span.start, end: min(span.end, firstBucket.advanced(byMicroseconds: granularity.microseconds)))))
        }
        if let lastBucket = buckets.last, span.end < end, buckets.count > 1 || partial.isEmpty {
            partial.append((buckets.count - 1, Period(start: max(span.start, lastBucket), end: span.end)))
        }
        for (position, part) in partial {
            let exact = try UsageReader.rangeValues(tenant: tenant, over: part, catalog: catalog, on: connection)
            for name in Set(values.keys).union(exact.keys) where metric == nil || metric == name {
                values[name, default: Array(repeating: .zero, count: buckets.count)][position] = exact[name] ?? .zero
            }
        }
        let series = values.keys.sorted().map { name in
            Series(metric: name, aggregation: catalog.aggregation(for: name), values: values[name] ?? [])
        }
        return UsageHistory(buckets: buckets, granularity: granularity, series: series)
    }

    /// $1 tenant, [$2, $3) whole buckets, $4 one metric or NULL, $5 'hour' or 'day'.
    /// `latest` compares (time, id bytewise, quantity), as every other read does.
    static let scalarBuckets = """
        SELECT metric, date_trunc($5, hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
               sum(quantity_sum), sum(event_count), max(quantity_max),
               (array_agg(latest_quantity ORDER BY latest_at DESC, latest_event_id COLLATE "C" DESC, latest_quantity DESC))[1]
          FROM usage_rollups
         WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 AND ($4::text IS NULL OR metric = $4)
         GROUP BY metric, bucket
        """

    static let uniqueBuckets = """
        SELECT metric, date_trunc($5, hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, count(DISTINCT value)
          FROM usage_rollup_values
         WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 AND ($4::text IS NULL OR metric = $4)
         GROUP BY metric, bucket
        """
}
