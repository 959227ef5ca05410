import BillingEngine
import Foundation
import PostgresClient
import TallyMessaging
import TallyRuntime
import TallyStore

/// Finds every (subscription, period) due at `as_of` — period end + grace ≤ as_of, not
/// yet invoiced, several per subscription when billing is behind — and records a
/// billing run with one item and one `invoice.generate` command (in the outbox) per
/// period, all in one transaction: a run is either planned whole or not at all. An ended
/// subscription whose invoiced periods got late usage gets an adjustment item.
public enum BillingRunPlanner {
    public struct Plan: Sendable, Equatable {
        public let runID: UUID
        public let due: Int
    }

    /// Plans the run for every tenant, or only for `tenants` (a re-run for one customer).
    /// How long after its end an ended subscription is still checked for late usage:
    /// the 90 days after which the edge refuses an event (SPEC §3), and some margin.
    static let lateUsageHorizon: TimeInterval = 100 * 86_400

    public static func plan(
        asOf: Date, grace: TimeInterval, tenants: [UUID]? = nil, on connection: isolated PostgresConnection
    ) throws -> Plan {
        let plans = try SubscriptionRecords.plans(on: connection)
        let subscriptions = try SubscriptionRecords.subscriptions(of: tenants, plans: plans, on: connection).values.flatMap { $0 }
        var invoiced: Set<String> = []
        for row in try connection.query("SELECT subscription_id::text, period_start FROM invoices WHERE kind = 'period'") {
            invoiced.insert("\(row.text(0) ?? "")|\(Instant(try row.decode(1, as: Date.self)).microsecondsSinceEpoch)")
        }
        let deadline = Instant(asOf.addingTimeInterval(-grace))
        var ids: [String] = []
        var indexes: [String] = []
        var starts: [String] = []
        var kinds: [String] = []
        var catalog: MetricCatalog?
        for subscription in subscriptions {
            var index: Int64 = 0
            var planned = false
            while let period = subscription.timeline.billingPeriod(index), period.billed.end <= deadline {
                let key = "\(subscription.id.uuidString.lowercased())|\(period.billed.start.microsecondsSinceEpoch)"
                if !invoiced.contains(key) {
                    ids.append(subscription.id.uuidString)
                    indexes.append(String(index))
                    starts.append(period.billed.start.description)
                    kinds.append("period")
                    planned = true
                }
                index += 1
            }
            // Ended, every period invoiced, and late usage that changes a charge: an
            // adjustment invoice (SPEC §2 step 3). Usage older than 90 days is refused at
            // the edge, so subscriptions that ended long ago are not looked at.
            guard !planned, let endsAt = subscription.timeline.endsAt, endsAt <= deadline,
                endsAt.date > asOf.addingTimeInterval(-Self.lateUsageHorizon), index > 0
            else { continue }
            if catalog == nil { catalog = try MetricCatalogRecords.load(on: connection) }
            let late = try InvoiceGenerator.lateUsage(
                subscription, before: nil, tenant: subscription.tenantID, catalog: catalog!, on: connection)
            guard try !InvoiceCalculator.adjustmentLines(late).isEmpty else { continue }
            ids.append(subscription.id.uuidString)
            indexes.append(String(index))
            starts.append(endsAt.description)
            kinds.append("adjustment")
        }
        let runID = try connection.query("INSERT INTO billing_runs (as_of, due_count) VALUES ($1, $2) RETURNING id", [asOf, ids.count])[0]
            .decode(0, as: UUID.self)
        guard !ids.isEmpty else {
            try connection.query("UPDATE billing_runs SET status = 'completed', completed_at = now() WHERE id = $1", [runID])
            return Plan(runID: runID, due: 0)
        }
        try connection.query(
            """
            INSERT INTO billing_run_items (billing_run_id, subscription_id, period_index, period_start, kind)
            SELECT $1, s, i, p, k FROM unnest($2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[]) AS u (s, i, p, k)
            """,
            [
                runID, PostgresTextArray(ids), PostgresTextArray(indexes), PostgresTextArray(starts), PostgresTextArray(kinds),
            ])
        let commands = zip(zip(ids, indexes), kinds).compactMap { item, kind -> InvoiceGenerateCommand? in
            guard let subscription = UUID(uuidString: item.0), let index = Int64(item.1) else { return nil }
            return InvoiceGenerateCommand(
                billingRunID: runID, subscriptionID: subscription, periodIndex: index, kind: kind == "adjustment" ? kind : nil)
        }
        try Outbox.enqueue(commands, on: connection)
        return Plan(runID: runID, due: ids.count)
    }
}

/// A billing run's progress.
public struct BillingRunStatus: Codable, Sendable, Equatable {
    public let id: UUID
    public let asOf: Date
    /// `running` until no item is pending, then `completed`.
    public let status: String
    public let due: Int
    public let issued: Int
    /// Periods that no longer existed when their turn came (canceled after planning).
    public let skipped: Int
    public let failed: Int
    public let pending: Int

    enum CodingKeys: String, CodingKey {
        case id, status, due, issued, skipped, failed, pending
        case asOf = "as_of"
    }

    /// The run, or nil.
    public static func load(_ id: UUID, on connection: isolated PostgresConnection) throws -> BillingRunStatus? {
        guard let row = try connection.query(
            """
            SELECT r.as_of, r.due_count,
                   count(*) FILTER (WHERE i.status = 'issued'), count(*) FILTER (WHERE i.status = 'failed'),
                   count(*) FILTER (WHERE i.status = 'pending'), count(*) FILTER (WHERE i.status = 'skipped')
              FROM billing_runs r LEFT JOIN billing_run_items i ON i.billing_run_id = r.id
             WHERE r.id = $1 GROUP BY r.id
            """, [id]).first
        else { return nil }
        let pending = try row.decode(4, as: Int.self)
        return BillingRunStatus(
            id: id, asOf: try row.decode(0), status: pending == 0 ? "completed" : "running", due: try row.decode(1),
            issued: try row.decode(2), skipped: try row.decode(5), failed: try row.decode(3), pending: pending)
    }
}
