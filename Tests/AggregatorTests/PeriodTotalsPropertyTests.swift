import BillingEngine
import Foundation
import Metering
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Aggregator

/// The period totals the Aggregator keeps as usage arrives (`UsagePeriodTotals`) against a
/// straight aggregation of the events stored, after every batch: random events of every
/// aggregation over a trial, billing periods and the calendar months around them; events
/// sent again (in the same batch with another time, and in later batches); late events;
/// a plan change and a cancellation between batches, which change the periods the next
/// events fall in (through the same configuration cache the Aggregator uses).
@Suite("Period totals equal a straight aggregation of the events")
struct PeriodTotalsPropertyTests {
    @Test("after each batch, every completed period's totals == naive aggregation (sum, count, max, latest, unique_count)")
    func totalsMatchNaive() async throws {
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
        let now = TestClock.now()
        let day: Int64 = 86_400_000_000
        let nowMicros = Instant(now).microsecondsSinceEpoch
        let subscriptions = SubscriptionStore(pool: harness.database)
        let subscription = try await subscriptions.create(
            tenant: tenant, plan: "starter", start: Instant(microsecondsSinceEpoch: nowMicros - 45 * day).date, trialDays: 7, grant: .byOperator,
            now: now)

        var random = SeededRandom(seed: 0x7E_A1_0D)
        let names = metrics.keys.sorted()
        var stored: [String: (metric: String, record: UsageRecord)] = [:]
        var sent: [(id: String, metric: String, record: UsageRecord)] = []
        let cache = UsageConfigCache()
        let connection = try await PostgresConnection.connect(
            configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), logger: AggregatorHarness.logger)
        var checkedPeriods = 0
        var checkedStates = 0
        for batchIndex in 0..<12 {
            if batchIndex == 4 {
                _ = try await subscriptions.changePlan(
                    id: subscription.id, to: "professional", at: Instant(microsecondsSinceEpoch: nowMicros - 20 * day).date, now: now)
            }
            if batchIndex == 8 {
                _ = try await subscriptions.cancel(
                    id: subscription.id, at: Instant(microsecondsSinceEpoch: nowMicros - 3 * day).date, atPeriodEnd: false, now: now)
            }
            var batch: [(id: String, metric: String, record: UsageRecord)] = []
            for index in 0..<250 {
                let metric = names[Int(random.next() % UInt64(names.count))]
                // Anywhere in the last 75 days: every batch brings late events into periods
                // completed by the batches before it. Every third batch stays within two hours
                // around the trial's end, or around the last day (periods holding all of a
                // batch's times, and periods cut by the batch's range).
                let micros: Int64
                if batchIndex % 3 == 2 {
                    let center = batchIndex % 2 == 0 ? nowMicros - 38 * day : nowMicros - 2 * 3_600_000_000
                    micros = center - 3_600_000_000 + Int64(random.next() % 7_200_000_000)
                } else {
                    micros = nowMicros - 60_000_000 - Int64(random.next() % UInt64(75 * day - 60_000_000))
                }
                let record = UsageRecord(
                    id: "p\(batchIndex)-\(index)", time: Instant(microsecondsSinceEpoch: micros),
                    quantity: Quantity(scaled: Int128(random.next() % 1_000_000)), metadata: ["user": "user-\(random.next() % 30)"])
                batch.append((record.id, metric, record))
            }
            // A few events of the last minutes (within this month), so every batch counts some
            // usage in the period in force and has a quota state to check, whatever the date.
            for offset in 0..<3 {
                let record = UsageRecord(
                    id: "r\(batchIndex)-\(offset)", time: Instant(TestClock.recent(Double(offset * 7 + batchIndex + 1), before: now)),
                    quantity: Quantity(units: Int64(offset + 1)), metadata: ["user": "recent-\(offset)"])
                batch.append((record.id, names[(batchIndex + offset) % names.count], record))
            }
            // Sent again: some earlier events as they were, some with another time and
            // quantity (the first stored wins), and some twice within this batch.
            for _ in 0..<40 where !sent.isEmpty {
                let earlier = sent[Int(random.next() % UInt64(sent.count))]
                if random.next() % 2 == 0 {
                    batch.append(earlier)
                } else {
                    let moved = UsageRecord(
                        id: earlier.id, time: Instant(microsecondsSinceEpoch: nowMicros - 60_000_000 - Int64(random.next() % UInt64(70 * day))),
                        quantity: Quantity(scaled: Int128(random.next() % 1_000_000)), metadata: ["user": "other"])
                    batch.append((earlier.id, earlier.metric, moved))
                }
            }
            // Twins: other events at exactly the time of one of the batch (same metric), with
            // ids before and after it bytewise ("T…" sorts before "p…", "x…" after), so the
            // latest is decided by the id, then the quantity — within an hour, a period, and
            // across batches.
            for offset in 10..<40 {
                let original = batch[offset]
                let twin = UsageRecord(
                    id: "\(offset % 2 == 0 ? "T" : "x")\(batchIndex)-\(offset)", time: original.record.time,
                    quantity: Quantity(scaled: Int128(random.next() % 1_000_000)), metadata: ["user": "twin"])
                batch.append((twin.id, original.metric, twin))
            }
            for offset in 0..<10 {
                let original = batch[offset]
                let later = UsageRecord(
                    id: original.id, time: Instant(microsecondsSinceEpoch: original.record.time.microsecondsSinceEpoch + 1_000_000 + Int64(offset)),
                    quantity: Quantity(scaled: 7), metadata: ["user": "dup"])
                batch.append((original.id, original.metric, later))
            }
            sent += batch
            // What the ledger stores: within the batch the earliest time of an id, and an id
            // stored before is not stored again.
            var earliest: [String: (metric: String, record: UsageRecord)] = [:]
            for event in batch where earliest[event.id].map({ event.record.time < $0.record.time }) ?? true {
                earliest[event.id] = (event.metric, event.record)
            }
            var fresh: [(metric: String, record: UsageRecord)] = []
            for (id, event) in earliest where stored[id] == nil {
                stored[id] = event
                fresh.append(event)
            }

            let body =
                "["
                + batch.map { event in
                    usageEventJSON(
                        id: event.id, tenant: tenant, metric: event.metric, quantity: "\"\(event.record.quantity)\"",
                        time: event.record.time.date, metadata: #"{"user": "\#(event.record.metadata["user"] ?? "")"}"#)
                }.joined(separator: ",") + "]"
            let decoded = UsageDecoder(now: now).decode([UsageMessage(deliveryTag: 1, messageID: nil, schema: nil, body: Array(body.utf8))])
            #expect(decoded.parkedEvents.isEmpty, "\(decoded.parkedEvents.prefix(3))")
            let outcome = try await UsageLedger.record(decoded, now: now, cache: cache, on: connection)

            // The quota state of the period in force: the metrics this batch counted in it,
            // each over the whole period with its event count (the totals the batch's
            // statement returned; unique_count read), as the stored events say.
            #expect(outcome.quotaStates.count <= 1)
            for state in outcome.quotaStates {
                let span = Period(start: Instant(try #require(state.periodStart)), end: Instant(try #require(state.periodEnd)))
                #expect(Set(state.metrics.keys) == Set(fresh.filter { span.contains($0.record.time) }.map(\.metric)), "batch \(batchIndex)")
                for (metric, position) in state.metrics {
                    let inside = stored.values.filter { $0.metric == metric && span.contains($0.record.time) }.map(\.record)
                    #expect(position.used == PartialAggregate(try #require(metrics[metric]), of: inside).value, "batch \(batchIndex), \(metric)")
                    #expect(position.events == Int64(inside.count), "batch \(batchIndex), \(metric)")
                }
                checkedStates += 1
            }

            // Every period completed so far, against the events stored.
            let completed = try await connection.query(
                "SELECT period_start, period_end FROM usage_periods WHERE tenant_id = $1", [tenant]
            ).map { row in
                Period(start: Instant(try row.decode(0, as: Date.self)), end: Instant(try row.decode(1, as: Date.self)))
            }
            #expect(!completed.isEmpty)
            let catalog = try await connection.withTransaction { try MetricCatalogRecords.load(on: $0) }
            for span in completed {
                var naive: [String: Quantity] = [:]
                for (metric, aggregation) in metrics {
                    let inside = stored.values.filter { $0.metric == metric && span.contains($0.record.time) }.map(\.record)
                    guard !inside.isEmpty else { continue }
                    naive[metric] = PartialAggregate(aggregation, of: inside).value
                }
                let (totals, read, range) = try await connection.withTransaction { connection in
                    (
                        try UsagePeriodTotals.values(of: [TenantPeriod(tenant: tenant, span: span)], catalog: catalog, on: connection)[
                            TenantPeriod(tenant: tenant, span: span)],
                        try UsageReader.values(tenant: tenant, over: span, catalog: catalog, on: connection),
                        try UsageReader.rangeValues(tenant: tenant, over: span, catalog: catalog, on: connection)
                    )
                }
                #expect(totals == naive, "batch \(batchIndex), period \(span)")
                #expect(read == naive, "batch \(batchIndex), period \(span) through UsageReader")
                #expect(range == naive, "batch \(batchIndex), period \(span) from the rollups")
                checkedPeriods += 1
            }
        }
        // The trial, billing periods, the calendar months before the subscription and
        // after its cancellation, and the period the cancellation cut short.
        let spans = try await connection.query("SELECT count(*) FROM usage_periods WHERE tenant_id = $1", [tenant])[0].decode(0, as: Int.self)
        #expect(spans >= 6, "periods completed: \(spans)")
        #expect(checkedPeriods > 40)
        #expect(checkedStates == 12, "quota states checked: \(checkedStates)")
        await connection.close()
        try await harness.tearDown()
    }
}
