import BillingEngine
import CivilTime
import Foundation
import Hummingbird
import Invoicing
import NIOCore
import PostgresClient
import TallyHTTP
import TallyStore
import UsageEvents

/// The time ranges a usage history can be asked for (`range=`), each ending with the
/// bucket that holds now.
enum UsageRange: String, CaseIterable, Sendable {
    case currentPeriod = "current_period"
    case last30Days = "last_30_days"
    case last3Months = "last_3_months"
    case last6Months = "last_6_months"

    /// The words the dashboard's range selector shows.
    var label: String {
        switch self {
        case .currentPeriod: "Current period"
        case .last30Days: "Last 30 days"
        case .last3Months: "Last 3 months"
        case .last6Months: "Last 6 months"
        }
    }

    /// The span the range covers at `now`: for the current period, its start (from the
    /// usage statement) up to the end of the current bucket; for the others, whole UTC days
    /// back from the end of today (months counted on the calendar, clamped as periods are).
    func span(now: Instant, periodStart: Instant, granularity: UsageHistory.Granularity) -> Period {
        let endOfBucket = granularity.floor(now).advanced(byMicroseconds: granularity.microseconds)
        let endOfToday = UsageHistory.Granularity.day.floor(now).advanced(byMicroseconds: Instant.microsecondsPerDay)
        let end = max(endOfBucket, endOfToday)
        switch self {
        case .currentPeriod: return Period(start: periodStart, end: max(endOfBucket, periodStart.advanced(byMicroseconds: 1)))
        case .last30Days: return Period(start: endOfToday.advanced(byMicroseconds: -30 * Instant.microsecondsPerDay), end: end)
        case .last3Months: return Period(start: BillingCalendar(anchor: endOfToday, interval: .monthly).boundary(-3), end: end)
        case .last6Months: return Period(start: BillingCalendar(anchor: endOfToday, interval: .monthly).boundary(-6), end: end)
        }
    }
}

/// `GET /v1/usage/history` (a series per metric from the hourly rollups, exact decimals,
/// empty buckets present) and `GET /v1/usage/export.csv` (one row per metric and day).
struct UsageHistoryRoutes {
    let pool: PostgresPool

    func register(on router: Router<TallyRequestContext>) {
        router.get("v1/usage/history", use: history)
        router.get("v1/usage/export.csv", use: export)
    }

    @Sendable func history(_ request: Request, context: TallyRequestContext) async throws -> UsageHistoryReport {
        let query = request.uri.queryParameters
        let tenant = try context.tenantInScope(query.get("tenant_id"))
        let range = try Self.range(query.get("range"))
        let granularity = try Self.granularity(query.get("granularity"))
        let metric = try Self.metric(query.get("metric"))
        let (history, span) = try await Self.read(
            tenant: tenant, range: range, granularity: granularity, metric: metric, now: Instant(TallyClock.now()), pool: pool)
        return UsageHistoryReport(tenantID: tenant, range: range.rawValue, span: span, history: history)
    }

    /// The `metric` filter: nil when absent or empty; a name no metric can have is a 400
    /// naming it (`API_CALLS` answered a series of zeros, a typo read as "no usage").
    static func metric(_ text: String?) throws -> String? {
        guard let text, !text.isEmpty else { return nil }
        guard MetricName.isValid(text) else { throw APIError.invalid("metric", "\(MetricName.rule), e.g. api_calls") }
        return text
    }

    /// The history of `range` at `now`, and the span it covers; 404 for an unknown tenant.
    static func read(
        tenant: UUID, range: UsageRange, granularity: UsageHistory.Granularity, metric: String?, now: Instant, pool: PostgresPool
    ) async throws -> (UsageHistory, Period) {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            guard try TenantStore.exists(tenant, on: connection) else { throw APIError.notFound("tenant", field: "tenant_id") }
            // Only the current period needs the tenant's subscriptions, to know where it began.
            let periodStart =
                range == .currentPeriod
                ? try UsageStatement.periodStart(tenant: tenant, asOf: now, on: connection) : now
            let span = range.span(now: now, periodStart: periodStart, granularity: granularity)
            try checkBuckets(span, granularity)
            let catalog = try MetricCatalogRecords.load(on: connection)
            return (
                try UsageHistory.read(tenant: tenant, over: span, granularity: granularity, metric: metric, catalog: catalog, on: connection),
                span
            )
        }
    }

    @Sendable func export(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let tenant = try context.tenantInScope(query.get("tenant_id"))
        let from = try Self.day(query.get("from"), field: "from")
        let to = try Self.day(query.get("to"), field: "to")
        guard from < to else { throw APIError.invalid("to", "must be after from (days [from, to), e.g. from=2026-11-01&to=2026-12-01)") }
        let span = Period(start: from, end: to)
        let days = span.duration / UsageHistory.Granularity.day.microseconds
        guard days <= UsageHistory.maximumBuckets else {
            throw APIError.invalid(
                "to", "is \(days) days after from; an export covers at most \(UsageHistory.maximumBuckets) days: export a shorter range")
        }
        let history = try await pool.withTransaction(isolation: .repeatableRead) { connection in
            guard try TenantStore.exists(tenant, on: connection) else { throw APIError.notFound("tenant", field: "tenant_id") }
            return try UsageHistory.read(
                tenant: tenant, over: span, granularity: .day, catalog: try MetricCatalogRecords.load(on: connection), on: connection)
        }
        let name = "usage-\(tenant)-\(Self.dayText(from))-\(Self.dayText(to)).csv"
        return Response(
            status: .ok,
            headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(name)\""],
            body: .init(byteBuffer: ByteBuffer(string: UsageCSV.render(history, tenant: tenant))))
    }

    static func range(_ text: String?) throws -> UsageRange {
        guard let text, !text.isEmpty else { return .currentPeriod }
        guard let range = UsageRange(rawValue: text) else {
            throw APIError.invalid("range", "must be one of \(UsageRange.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return range
    }

    static func granularity(_ text: String?) throws -> UsageHistory.Granularity {
        guard let text, !text.isEmpty else { return .day }
        guard let granularity = UsageHistory.Granularity(rawValue: text) else { throw APIError.invalid("granularity", "must be hour or day") }
        return granularity
    }

    static func checkBuckets(_ span: Period, _ granularity: UsageHistory.Granularity) throws {
        let count = (span.duration + granularity.microseconds - 1) / granularity.microseconds
        guard count <= UsageHistory.maximumBuckets else {
            throw APIError.invalid(
                "granularity", "asks for \(count) buckets; at most \(UsageHistory.maximumBuckets) are returned: use day, or a shorter range")
        }
    }

    /// A UTC day `YYYY-MM-DD`, or an RFC 3339 time at the start of one (UTC midnight). A
    /// time within a day is refused: it was taken as its day's start, so an export "from
    /// 12:00" counted the morning before it and one "to 10:00" dropped that day.
    static func day(_ text: String?, field: String) throws -> Instant {
        guard let text, !text.isEmpty else { throw APIError.invalid(field, "is required: a UTC day, e.g. 2026-11-01") }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        if text.count == 10, parts.count == 3, let year = Int64(parts[0]), let month = Int64(parts[1]), let day = Int64(parts[2]) {
            let date = CivilDate(year: year, month: month, day: day)
            guard date.isValid, (2000...9999).contains(year) else { throw APIError.invalid(field, "is not a day between 2000-01-01 and 9999-12-31") }
            return Instant(microsecondsSinceEpoch: date.daysSinceEpoch * Instant.microsecondsPerDay)
        }
        let instant = Instant(try SubscriptionRoutes.instant(text, field: field))
        let day = UsageHistory.Granularity.day.floor(instant)
        guard day == instant else {
            throw APIError.invalid(
                field,
                "is a time within a day; the export counts whole UTC days: give a day such as \(Self.dayText(day)) (GET /v1/usage takes any time)")
        }
        return day
    }

    static func dayText(_ instant: Instant) -> String {
        let date = CivilDate(daysSinceEpoch: UsageHistory.Granularity.day.floor(instant).microsecondsSinceEpoch / Instant.microsecondsPerDay)
        return String(format: "%04d-%02d-%02d", date.year, date.month, date.day)
    }
}

/// The CSV finance downloads: `date,metric,aggregation,value`, one row per metric and UTC
/// day (days without usage included, as 0), exact decimals, RFC 4180 quoting.
enum UsageCSV {
    static func render(_ history: UsageHistory, tenant: UUID) -> String {
        var text = "tenant_id,date,metric,aggregation,value\r\n"
        for series in history.series {
            for (bucket, value) in zip(history.buckets, series.values) {
                let fields = [tenant.lowercasedText, UsageHistoryRoutes.dayText(bucket), series.metric, series.aggregation.name, value.description]
                text += fields.map(field).joined(separator: ",") + "\r\n"
            }
        }
        return text
    }

    /// A CSV field, quoted when it holds a separator, a quote or a line break — looked for
    /// scalar by scalar, as a spreadsheet reads bytes: "\r\n", or a quote with a combining
    /// mark after it, is one `Character` equal to none of them.
    static func field(_ value: String) -> String {
        guard value.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" }) else { return value }
        var quoted = String.UnicodeScalarView()
        for scalar in value.unicodeScalars {
            quoted.append(scalar)
            if scalar == "\"" { quoted.append(scalar) }
        }
        return "\"" + String(quoted) + "\""
    }
}

/// The answer of `GET /v1/usage/history`.
struct UsageHistoryReport: ResponseEncodable, Sendable {
    struct Point: Encodable, Sendable {
        /// The bucket's start as the API writes instants (`2026-11-30T14:00:00.000Z`).
        let start: String
        /// Exact decimal text.
        let value: String
    }

    struct Series: Encodable, Sendable {
        let metric: String
        let aggregation: String
        let points: [Point]
    }

    let tenantID: UUID
    let range: String
    let granularity: String
    /// The buckets cover `[from, to)`.
    let from: Date
    let to: Date
    let series: [Series]

    init(tenantID: UUID, range: String, span: Period, history: UsageHistory) {
        self.tenantID = tenantID
        self.range = range
        self.granularity = history.granularity.rawValue
        self.from = history.buckets.first?.date ?? span.start.date
        self.to = history.buckets.last.map { $0.advanced(byMicroseconds: history.granularity.microseconds).date } ?? span.end.date
        // Buckets are whole hours: their text is written once, not once per metric through a date formatter.
        let starts = history.buckets.map { String($0.description.dropLast()) + ".000Z" }
        self.series = history.series.map { series in
            Series(
                metric: series.metric, aggregation: series.aggregation.name,
                points: zip(starts, series.values).map { Point(start: $0, value: $1.description) })
        }
    }

    enum CodingKeys: String, CodingKey {
        case range, granularity, from, to, series
        case tenantID = "tenant_id"
    }
}
