import BillingEngine
import Foundation
import Invoicing
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

/// Usage reads (rollups for whole hours, raw events at the edges) against a naive
/// aggregation of the same events with the billing engine, over random ranges, for
/// every kind of aggregation; the events are written by the Aggregator's ledger,
/// in batches that overlap (duplicates must not count).
@Suite("Usage reads equal a straight aggregation of the events")
struct UsageReadPropertyTests {
    @Test(
        "random events and random ranges: rollups + edges == naive aggregation, for sum, count, max, latest, unique_count; so is every bucket of the usage history, and the usage statement at random instants"
    )
    func readsMatchNaive() async throws {
        let harness = try await AggregatorHarness.make()
        let tenant = try await harness.createTenants(1)[0]
        let suffix = harness.id.replacingOccurrences(of: "-", with: "")
        let metrics: [String: Aggregation] = [
            "api_calls": .sum, "users": .max, "c\(suffix)": .count, "l\(suffix)": .latest,
            "u\(suffix)": .uniqueCount(field: "user"),
        ]
        for (code, aggregation) in metrics where code.hasSuffix(suffix) {
            let field: String? = if case .uniqueCount(let field) = aggregation { field } else { nil }
            try await harness.database.query(
                "INSERT INTO billable_metrics (code, name, aggregation, unique_field) VALUES ($1, $1, $2, $3)",
                [code, "\(aggregation)".components(separatedBy: "(")[0], field])
        }
        var random = SeededRandom(seed: 0xA11_5EED)
        let end = Instant(TestClock.now()).microsecondsSinceEpoch / 3_600_000_000 * 3_600_000_000 - 3_600_000_000
        let start = end - 30 * 3_600_000_000
        var records: [String: [UsageRecord]] = [:]
        var bodies: [String] = []
        var events: [String] = []
        let names = metrics.keys.sorted()
        for index in 0..<3000 {
            let metric = names[Int(random.next() % UInt64(names.count))]
            // A few events share a time, to exercise latest's tie-break on id.
            let micros = index % 50 == 0 ? start + 1_800_000_000 : start + Int64(random.next() % UInt64(end - start))
            let time = Instant(microsecondsSinceEpoch: micros)
            let quantity = Quantity(scaled: Int128(random.next() % 1_000_000))
            let user = "user-\(random.next() % 20)"
            let id = "r\(index)"
            records[metric, default: []].append(UsageRecord(id: id, time: time, quantity: quantity, metadata: ["user": user]))
            events.append(
                usageEventJSON(
                    id: id, tenant: tenant, metric: metric, quantity: "\"\(quantity)\"", time: time.date,
                    metadata: #"{"user": "\#(user)"}"#))
        }
        for chunk in stride(from: 0, to: events.count, by: 400) {
            // Each batch also repeats the previous batch's last 50 events.
            bodies.append("[" + events[max(0, chunk - 50)..<min(chunk + 400, events.count)].joined(separator: ",") + "]")
        }
        let connection = try await PostgresConnection.connect(
            configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), logger: AggregatorHarness.logger)
        for (index, body) in bodies.enumerated() {
            let batch = UsageDecoder(now: TestClock.now()).decode([
                UsageMessage(deliveryTag: UInt64(index), messageID: nil, schema: nil, body: Array(body.utf8))
            ])
            #expect(batch.parkedEvents.isEmpty)
            _ = try await UsageLedger.record(batch, now: TestClock.now(), on: connection)
        }
        let catalog = try await connection.withTransaction { try MetricCatalogRecords.load(on: $0) }
        for round in 0..<60 {
            // Some ranges on hour boundaries, some anywhere, some inside one hour.
            var from = start + Int64(random.next() % UInt64(end - start))
            var to = from + Int64(random.next() % UInt64(round % 3 == 0 ? 3_600_000_000 : end - from + 1))
            if round % 4 == 1 {
                from = from / 3_600_000_000 * 3_600_000_000
                to = to / 3_600_000_000 * 3_600_000_000 + 3_600_000_000
            }
            guard from < to else { continue }
            let span = Period(start: Instant(microsecondsSinceEpoch: from), end: Instant(microsecondsSinceEpoch: to))
            let read = try await connection.withTransaction { connection in
                try UsageReader.values(tenant: tenant, over: span, catalog: catalog, on: connection)
            }
            var naive: [String: Quantity] = [:]
            for (metric, metricRecords) in records {
                let inside = metricRecords.filter { span.contains($0.time) }
                guard !inside.isEmpty else { continue }
                naive[metric] = PartialAggregate(catalog.aggregation(for: metric), of: inside).value
            }
            #expect(read == naive, "range \(span)")
        }
        // The usage history (the trend chart, the CSV) of the same events: every hour and
        // day bucket equals the naive aggregation of the events inside it, empty ones zero.
        // The range starts and ends inside buckets: those count only the range's part.
        let span = Period(
            start: Instant(microsecondsSinceEpoch: start + 90 * 60_000_000 + 17_000_000),
            end: Instant(microsecondsSinceEpoch: end - 7 * 60_000_000))
        for granularity in UsageHistory.Granularity.allCases {
            let history = try await connection.withTransaction { connection in
                try UsageHistory.read(tenant: tenant, over: span, granularity: granularity, catalog: catalog, on: connection)
            }
            #expect(history.buckets.first == granularity.floor(span.start))
            #expect(history.buckets.last == granularity.floor(span.end.advanced(byMicroseconds: -1)))
            #expect(history.series.map(\.metric) == names)
            for series in history.series {
                #expect(series.values.count == history.buckets.count)
                for (bucket, value) in zip(history.buckets, series.values) {
                    let slot = Period(start: bucket, end: bucket.advanced(byMicroseconds: granularity.microseconds))
                    let inside = records[series.metric, default: []].filter { slot.contains($0.time) && span.contains($0.time) }
                    let expected = inside.isEmpty ? Quantity.zero : PartialAggregate(series.aggregation, of: inside).value
                    #expect(value == expected, "\(series.metric) \(granularity) bucket \(bucket)")
                }
            }
            let one = try await connection.withTransaction { connection in
                try UsageHistory.read(tenant: tenant, over: span, granularity: granularity, metric: "api_calls", catalog: catalog, on: connection)
            }
            #expect(one.series.map(\.metric) == ["api_calls"])
            #expect(one.series.first?.values == history.series.first { $0.metric == "api_calls" }?.values)
        }
        // The usage read model (GET /v1/usage's current period, the upcoming invoice, the
        // dashboard): with a professional subscription from the first event's hour, at random
        // instants, each metric's value is the naive aggregation of the events before the
        // instant, against the plan's quota; before the subscription, the calendar month.
        let subscription = try await harness.database.query(
            "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, $2, $2) RETURNING id",
            [tenant, Instant(microsecondsSinceEpoch: start).date])[0].decode(0, as: UUID.self)
        try await harness.database.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, 'professional', 1, $2, 'start', $2)
            """, [subscription, Instant(microsecondsSinceEpoch: start).date])
        for round in 0..<25 {
            let asOf = Instant(microsecondsSinceEpoch: start + Int64(random.next() % UInt64(end - start + 7_200_000_000)))
            let statement = try #require(
                try await connection.withTransaction(isolation: .repeatableRead) { try UsageStatement.load(tenant: tenant, asOf: asOf, on: $0) })
            #expect(statement.kind == .billing, "round \(round)")
            #expect(statement.plan?.slug == "professional")
            #expect(statement.counted == Period(start: Instant(microsecondsSinceEpoch: start), end: asOf))
            #expect(Set(statement.metrics.map(\.metric)) == Set(names).union(Plan.professional.terms.keys))
            for standing in statement.metrics {
                let before = records[standing.metric, default: []].filter { $0.time < asOf }
                let expected = before.isEmpty ? Quantity.zero : PartialAggregate(catalog.aggregation(for: standing.metric), of: before).value
                #expect(standing.value == expected, "\(standing.metric) at \(asOf)")
                #expect(standing.quota == Plan.professional.terms[standing.metric]?.quota)
            }
            #expect(statement.baseSoFar == Cents(99_900))
        }
        // In the next period, the previous one is compared as far into it as this one is:
        // its events before the same offset, not all of them.
        let calendar = BillingCalendar(anchor: Instant(microsecondsSinceEpoch: start), interval: .monthly)
        for round in 0..<5 {
            let offset = Int64(random.next() % UInt64(end - start + 3_600_000_000))
            let asOf = calendar.period(1).start.advanced(byMicroseconds: offset)
            let statement = try #require(
                try await connection.withTransaction(isolation: .repeatableRead) { try UsageStatement.load(tenant: tenant, asOf: asOf, on: $0) })
            let previous = try #require(statement.previous, "round \(round)")
            for metric in names {
                let before = records[metric, default: []].filter { $0.time.microsecondsSinceEpoch < start + offset }
                let expected = before.isEmpty ? Quantity.zero : PartialAggregate(catalog.aggregation(for: metric), of: before).value
                #expect(previous[metric] ?? .zero == expected, "\(metric), \(offset) µs into the period")
            }
        }
        let before = try #require(
            try await connection.withTransaction {
                try UsageStatement.load(tenant: tenant, asOf: Instant(microsecondsSinceEpoch: start - 1), on: $0)
            })
        #expect(before.kind == .calendarMonth)
        #expect(before.plan == nil && before.draft == nil)
        #expect(before.metrics.allSatisfy { $0.value == .zero && $0.quota == nil })
        try await harness.database.query("DELETE FROM subscription_plan_changes WHERE subscription_id = $1", [subscription])
        try await harness.database.query("DELETE FROM subscriptions WHERE id = $1", [subscription])
        await connection.close()
        try await harness.tearDown()
    }

    @Test("finance's batched charges equal each tenant's usage statement, with period totals kept by the ledger and without them")
    func batchedCharges() async throws {
        let harness = try await AggregatorHarness.make()
        let tenants = try await harness.createTenants(4)
        let end = Instant(TestClock.now()).microsecondsSinceEpoch / 3_600_000_000 * 3_600_000_000 - 3_600_000_000
        // 17 minutes off the hour: never a month's first instant, so the subscriptions'
        // periods are never the calendar month the ledger completes for tenant 3 (at 21:00–
        // 21:59 UTC on a month's 1st, an hour-aligned start was that very month).
        let start = end - 20 * 3_600_000_000 - 17 * 60_000_000
        let connection = try await AggregatorHarness.connect()
        var subscriptions: [UUID] = []
        // Tenants 0 and 1 subscribe before their usage is stored (the ledger keeps their
        // period's totals), 2 after (its period is read from the rollups), 3 never.
        func subscribe(_ tenant: UUID, plan: String) async throws {
            let id = try await harness.database.query(
                "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, $2, $2) RETURNING id",
                [tenant, Instant(microsecondsSinceEpoch: start).date])[0].decode(0, as: UUID.self)
            try await harness.database.query(
                """
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                VALUES ($1, $2, 1, $3, 'start', $3)
                """, [id, plan, Instant(microsecondsSinceEpoch: start).date])
            subscriptions.append(id)
        }
        try await subscribe(tenants[0], plan: "starter")
        try await subscribe(tenants[1], plan: "professional")
        var random = SeededRandom(seed: 0xC4A2_6E5)
        var events: [String] = []
        for index in 0..<600 {
            let tenant = tenants[index % 4]
            let metric = ["api_calls", "estimates", "users"][Int(random.next() % 3)]
            let time = Instant(microsecondsSinceEpoch: start + Int64(random.next() % UInt64(end - start)))
            events.append(usageEventJSON(id: "c\(index)", tenant: tenant, metric: metric, quantity: "\"\(random.next() % 40).25\"", time: time.date))
        }
        let batch = UsageDecoder(now: TestClock.now()).decode([
            UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: Array("[\(events.joined(separator: ","))]".utf8))
        ])
        #expect(batch.parkedEvents.isEmpty)
        _ = try await UsageLedger.record(batch, now: TestClock.now(), on: connection)
        try await subscribe(tenants[2], plan: "starter")
        let asOf = Instant(microsecondsSinceEpoch: end + 1_800_000_000)
        let (charges, statements, tracked) = try await connection.withTransaction(isolation: .repeatableRead) { connection in
            let charges = try UsageStatement.charges(of: tenants, asOf: asOf, on: connection)
            let statements = try tenants.map { try UsageStatement.load(tenant: $0, asOf: asOf, on: connection) }
            let catalog = try MetricCatalogRecords.load(on: connection)
            let tracked = try UsagePeriodTotals.values(
                of: Set(statements.compactMap { statement in statement.map { TenantPeriod(tenant: $0.tenantID, span: $0.period) } }),
                catalog: catalog, on: connection)
            return (charges, statements, tracked)
        }
        // Tenants 0 and 1 are read from their period's totals, tenant 2 from the rollups
        // (tenant 3's calendar month has totals too, and no charge).
        #expect(Set(tracked.keys.map(\.tenant)) == [tenants[0], tenants[1], tenants[3]])
        for (index, tenant) in tenants.enumerated() {
            let statement = try #require(statements[index])
            if index == 3 {
                #expect(charges[tenant] == nil)
                continue
            }
            let charge = try #require(charges[tenant])
            #expect(charge.total == statement.draft?.total, "tenant \(index)")
            #expect(try #require(charge.total) > Cents(29_900), "tenant \(index) has overage")
            #expect(charge.period == statement.period)
        }
        for id in subscriptions {
            try await harness.database.query("DELETE FROM subscription_plan_changes WHERE subscription_id = $1", [id])
            try await harness.database.query("DELETE FROM subscriptions WHERE id = $1", [id])
        }
        await connection.close()
        try await harness.tearDown()
    }
}
