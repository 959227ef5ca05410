import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// Moving subscriptions from one version of a plan to another (SPEC §2.1: "subscriptions
/// stay on their version until migrated (from the start of a period)"): each moves at
/// the start of its next period (the end of its trial when it is in one), with a plan
/// change of kind `migration`; the period it is in stays on the old version.
public enum PlanMigrations {
    /// One subscription the migration moves, or would.
    public struct Move: Sendable, Codable, Equatable {
        public let subscriptionID: UUID
        public let tenantID: UUID
        /// The start of its next period: the new version bills from here.
        public let effectiveAt: Date
        /// The current period's base fee and usage charges under each version, with the
        /// usage counted so far (what the next periods would cost at this usage).
        public let currentChargeCents: Int64
        public let newChargeCents: Int64
        public let differenceCents: Int64

        enum CodingKeys: String, CodingKey {
            case subscriptionID = "subscription_id"
            case tenantID = "tenant_id"
            case effectiveAt = "effective_at"
            case currentChargeCents = "current_charge_cents"
            case newChargeCents = "new_charge_cents"
            case differenceCents = "difference_cents"
        }
    }

    /// A subscription on the old version that is not moved, and why.
    public struct Skip: Sendable, Codable, Equatable {
        public let subscriptionID: UUID
        public let reason: String

        enum CodingKeys: String, CodingKey {
            case reason
            case subscriptionID = "subscription_id"
        }
    }

    public struct Outcome: Sendable, Codable, Equatable {
        public let dryRun: Bool
        public let moved: [Move]
        public let skipped: [Skip]

        enum CodingKeys: String, CodingKey {
            case moved, skipped
            case dryRun = "dry_run"
        }
    }

    /// Moves the subscriptions on `code` version `from` at `at` (of `tenant` only, when
    /// given) to version `to` from their next period start; with `dryRun`, only says what
    /// it would do. Refused (`CatalogRefusal`) for an unknown plan or version, or versions
    /// of different currencies (one tenant bills in one currency).
    public static func migrate(
        code: String, from: Int, to: Int, tenant: UUID?, at: Date, dryRun: Bool, on connection: isolated PostgresConnection
    ) throws -> Outcome {
        let catalog = try PlanCatalogRecords.load(on: connection)
        guard catalog[code] != nil else { throw CatalogRefusal(.notFound, field: "plan_code", "no plan \(code)") }
        guard let old = catalog.plan(code, version: from) else {
            throw CatalogRefusal(.invalid, field: "from_version", "plan \(code) has no version \(from)")
        }
        guard let new = catalog.plan(code, version: to) else {
            throw CatalogRefusal(.invalid, field: "to_version", "plan \(code) has no version \(to)")
        }
        guard from != to else { throw CatalogRefusal(.invalid, field: "to_version", "is the version they are on") }
        guard old.currency == new.currency else {
            throw CatalogRefusal(
                .conflict, field: "to_version",
                "bills in \(new.currency.uppercased()), version \(from) in \(old.currency.uppercased()): a tenant bills in one currency")
        }
        guard old.interval == new.interval else {
            throw CatalogRefusal(
                .conflict, field: "to_version",
                "bills every \(new.interval.rawValue), version \(from) every \(old.interval.rawValue): "
                    + "a subscription's periods keep their length; start new subscriptions on it instead")
        }
        // The subscriptions naming the old version, locked when they are moved (a plan
        // change of one of them waits for this one); a dry run locks nothing.
        let ids = try connection.query(
            """
            SELECT DISTINCT s.id FROM subscriptions s JOIN subscription_plan_changes c ON c.subscription_id = s.id
             WHERE c.plan_slug = $1 AND c.plan_version = $2 AND ($3::uuid IS NULL OR s.tenant_id = $3)
               AND (s.ends_at IS NULL OR s.ends_at > s.started_at)
            """, [code, from, tenant]
        ).map { try $0.decode(0, as: UUID.self) }
        guard !ids.isEmpty else { return Outcome(dryRun: dryRun, moved: [], skipped: []) }
        let tenants = Set(
            try connection.query(
                "SELECT tenant_id FROM subscriptions WHERE id = ANY($1::uuid[]) ORDER BY id" + (dryRun ? "" : " FOR UPDATE"),
                [PostgresTextArray(ids.map(\.lowercasedText))]
            ).map { try $0.decode(0, as: UUID.self) }
        ).sorted { $0.precedes($1) }
        let subscriptions = try SubscriptionRecords.subscriptions(of: tenants, plans: catalog, on: connection).values.flatMap { $0 }
            .filter { ids.contains($0.id) }.sorted { $0.id.precedes($1.id) }
        let instant = Instant(at)
        var candidates: [(StoredSubscription, Period, Instant)] = []
        var skipped: [Skip] = []
        for stored in subscriptions {
            let timeline = stored.timeline
            guard timeline.plan(at: instant) == old else {
                skipped.append(Skip(subscriptionID: stored.id, reason: "not on \(code) v\(from) now"))
                continue
            }
            guard let (span, _) = stored.period(containing: instant) else {
                skipped.append(Skip(subscriptionID: stored.id, reason: "has ended or not started"))
                continue
            }
            if let endsAt = timeline.endsAt, endsAt <= span.end {
                skipped.append(Skip(subscriptionID: stored.id, reason: "ends with its current period"))
                continue
            }
            guard span.end.date < SubscriptionStore.yearTenThousand else {
                skipped.append(Skip(subscriptionID: stored.id, reason: "its next period starts after 9999-12-31"))
                continue
            }
            if timeline.changes.contains(where: { $0.effectiveAt > instant }) {
                skipped.append(Skip(subscriptionID: stored.id, reason: "has a plan change scheduled; migrate it after that change"))
                continue
            }
            // A past `at`: the period it would start in may be invoiced already, at the old price.
            do {
                try SubscriptionStore.refuseIfInvoiced(stored.id, from: span.end, on: connection, what: "moving it then")
            } catch let refusal as SubscriptionRefusal {
                skipped.append(Skip(subscriptionID: stored.id, reason: refusal.message))
                continue
            }
            candidates.append((stored, span, span.end))
        }
        let values = try UsagePeriodTotals.exactValues(
            of: Set(candidates.map { TenantPeriod(tenant: $0.0.tenantID, span: $0.1) }), catalog: try MetricCatalogRecords.load(on: connection),
            on: connection)
        var moved: [Move] = []
        for (stored, span, effective) in candidates {
            let usage = values[TenantPeriod(tenant: stored.tenantID, span: span)] ?? [:]
            guard let current = try? charge(old, usage), let next = try? charge(new, usage),
                case (let difference, false) = next.value.subtractingReportingOverflow(current.value)
            else {
                skipped.append(Skip(subscriptionID: stored.id, reason: "its usage is beyond what an invoice can hold; check for a runaway meter"))
                continue
            }
            moved.append(
                Move(
                    subscriptionID: stored.id, tenantID: stored.tenantID, effectiveAt: effective.date, currentChargeCents: current.value,
                    newChargeCents: next.value, differenceCents: difference))
        }
        // One statement for every move: a change to subscriptions takes their tenants' usage
        // locks (migration 023), all of a statement's at once and in one order.
        if !dryRun, !moved.isEmpty {
            try connection.query(
                """
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                SELECT m.id, $3, $4, m.effective_at, 'migration', $5
                  FROM unnest($1::uuid[], $2::timestamptz[]) AS m (id, effective_at)
                """,
                [
                    PostgresTextArray(moved.map(\.subscriptionID.lowercasedText)),
                    PostgresTextArray(
                        moved.map { PostgresTimestamp(microsecondsSinceEpoch: Instant($0.effectiveAt).microsecondsSinceEpoch).description }),
                    code, to, at,
                ])
        }
        return Outcome(dryRun: dryRun, moved: moved, skipped: skipped)
    }

    /// A whole period's base fee and usage charges under `plan`.
    private static func charge(_ plan: Plan, _ values: [String: Quantity]) throws(BillingError) -> Cents {
        var total = plan.baseFee.value
        for metric in values.keys.sorted() {
            let (sum, overflow) = total.addingReportingOverflow(try plan.charge(metric: metric, value: values[metric] ?? .zero).value)
            guard !overflow else { throw .amountOutOfRange("the charges of \(plan.slug)") }
            total = sum
        }
        return Cents(total)
    }
}
