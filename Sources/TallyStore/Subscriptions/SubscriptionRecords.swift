import BillingEngine
import CivilTime
import Foundation
import PostgresClient

/// A tenant's subscription as stored, with the engine's view of its timeline.
public struct StoredSubscription: Sendable {
    public let id: UUID
    public let tenantID: UUID
    public let status: String
    public let timeline: Subscription

    /// When the subscription began (its trial's start, or its first period's).
    public var start: Instant { timeline.trial?.start ?? timeline.calendar.anchor }

    /// Whether usage at `instant` falls in this subscription's life (trial included).
    public func covers(_ instant: Instant) -> Bool {
        start <= instant && timeline.endsAt.map { instant < $0 } ?? true
    }

    /// The billing period (or the trial) containing `instant`, and whether it is the trial.
    public func period(containing instant: Instant) -> (span: Period, trial: Bool)? {
        if let trial = timeline.heldTrial, trial.contains(instant) { return (trial, true) }
        return timeline.billingPeriod(containing: instant).map { ($0.billed, false) }
    }
}

/// Plans and subscriptions from PostgreSQL, as BillingEngine values.
public enum SubscriptionRecords {
    /// Every version of every plan (`PlanCatalogRecords.load`).
    public static func plans(on connection: isolated PostgresConnection) throws -> PlanCatalog {
        try PlanCatalogRecords.load(on: connection)
    }

    /// The subscriptions of `tenants` (every tenant's when nil), oldest first per tenant.
    public static func subscriptions(
        of tenants: [UUID]?, plans: PlanCatalog, on connection: isolated PostgresConnection
    ) throws -> [UUID: [StoredSubscription]] {
        // Two statements, not `$1 IS NULL OR …`: that form cannot use the tenant index, and
        // the Aggregator asks for a thousand tenants of a large table per batch.
        let select = """
            SELECT s.id, s.tenant_id, s.status, s.started_at, s.trial_end, s.ends_at, c.plan_slug, c.effective_at, c.kind, c.plan_version
              FROM subscriptions s JOIN subscription_plan_changes c ON c.subscription_id = s.id
            """
        let rows =
            try tenants.map { tenants in
                try connection.query(
                    select + " WHERE s.tenant_id = ANY($1::uuid[]) ORDER BY s.started_at, s.id, c.effective_at",
                    [PostgresTextArray(tenants.map(\.lowercasedText))])
            } ?? connection.query(select + " ORDER BY s.started_at, s.id, c.effective_at")
        var grouped: [(first: PostgresRow, changes: [PostgresRow])] = []
        for row in rows {
            if let last = grouped.last, last.first.text(0) == row.text(0) {
                grouped[grouped.count - 1].changes.append(row)
            } else {
                grouped.append((row, [row]))
            }
        }
        var result: [UUID: [StoredSubscription]] = [:]
        for (first, changes) in grouped {
            guard let initial = plans.plan(try first.decode(6, as: String.self), version: try first.decode(9, as: Int.self)) else { continue }
            let later = try changes.dropFirst().compactMap { row -> PlanChange? in
                guard let plan = plans.plan(try row.decode(6, as: String.self), version: try row.decode(9, as: Int.self)) else { return nil }
                return PlanChange(effectiveAt: Instant(try row.decode(7, as: Date.self)), plan: plan)
            }
            let tenant = try first.decode(1, as: UUID.self)
            let start = Instant(try first.decode(3, as: Date.self))
            let endsAt = try first.decode(5, as: Date?.self).map(Instant.init)
            // Canceled before it started (ends where it starts): it never had its trial either.
            let voided = endsAt == start
            let timeline = Subscription(
                plan: initial, start: start, trialEnd: voided ? nil : try first.decode(4, as: Date?.self).map(Instant.init),
                changes: later, endsAt: endsAt)
            result[tenant, default: []].append(
                StoredSubscription(id: try first.decode(0), tenantID: tenant, status: try first.decode(2), timeline: timeline))
        }
        return result
    }
}
