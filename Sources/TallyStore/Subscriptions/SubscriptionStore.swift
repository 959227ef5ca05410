import BillingEngine
import Foundation
import PostgresClient

/// A subscription as the API shows it.
public struct SubscriptionView: Sendable, Codable, Equatable {
    public struct Change: Sendable, Codable, Equatable {
        public let plan: String
        /// The catalog version the change bills with.
        public let planVersion: Int
        public let effectiveAt: Date
        /// start, upgrade, downgrade, or migration (another version of the same plan).
        public let kind: String

        enum CodingKeys: String, CodingKey {
            case plan, kind
            case planVersion = "plan_version"
            case effectiveAt = "effective_at"
        }
    }

    public struct Span: Sendable, Codable, Equatable {
        public let start: Date
        public let end: Date
    }

    public let id: UUID
    public let tenantID: UUID
    /// `scheduled` (starts later), `trialing`, `active` or `canceled`, as of the time of the request.
    public let status: String
    /// The plan in force as of the time of the request, and its catalog version.
    public let plan: String
    public let planVersion: Int
    public let startedAt: Date
    public let trialEnd: Date?
    public let anchor: Date
    public let interval: String
    public let endsAt: Date?
    public let currentPeriod: Span?
    public let changes: [Change]

    enum CodingKeys: String, CodingKey {
        case id, status, plan, anchor, interval, changes
        case planVersion = "plan_version"
        case tenantID = "tenant_id"
        case startedAt = "started_at"
        case trialEnd = "trial_end"
        case endsAt = "ends_at"
        case currentPeriod = "current_period"
    }
}

/// Why a subscription request was refused, with the field at fault.
public struct SubscriptionRefusal: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case invalid
        case notFound
        /// The request would change something already invoiced, or contradicts the state.
        case conflict
        /// The principal may not ask this (a tenant key granting itself a trial).
        case forbidden
    }

    public let kind: Kind
    public let field: String
    public let message: String
}

/// Subscriptions, their plan changes and cancellations (SPEC §2 "Plan changes").
///
/// Every change is decided by the billing engine's `Subscription` (an upgrade at the
/// moment asked for, a downgrade at the next period start; cancel now or at period
/// end) and refused with a conflict when it would alter a period already invoiced.
public struct SubscriptionStore: Sendable {
    let pool: PostgresPool

    /// 10000-01-01T00:00:00Z: every time written is before it. PostgreSQL takes later
    /// ones, but they are not RFC 3339 and Tally cannot read them back: a plan change
    /// stored at 10000-01-15 made every read of its tenant's subscriptions fail, and with
    /// them the Aggregator's batches holding that tenant's usage (other tenants' too).
    public static let yearTenThousand = Date(timeIntervalSince1970: 253_402_300_800)

    /// Refuses (400 naming `at`) a change or end that would fall in year 10000 or later:
    /// a request's own time is bounded, but the period boundary it moves to may not be.
    static func refuseBeyondYear9999(_ instant: Instant, what: String) throws {
        guard instant.date >= yearTenThousand else { return }
        throw SubscriptionRefusal(
            kind: .invalid, field: "at", message: "\(what) would take effect after 9999-12-31 (the next period start); ask for an earlier time")
    }

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// The refusal of a plan no one may subscribe or change to: archived, or no plan at
    /// all; naming the open plans (the first 20 — a catalog of hundreds would make the
    /// message the size of the catalog; `GET /v1/plans` lists them).
    static func notOpen(_ slug: String, plans: PlanCatalog) -> SubscriptionRefusal {
        let open = plans.openSlugs
        let listed = open.prefix(20).joined(separator: ", ") + (open.count > 20 ? " and \(open.count - 20) more (GET /v1/plans lists them)" : "")
        let reason = plans.archived.contains(slug) ? "is archived: it takes no new subscriptions or changes" : "names no plan"
        return SubscriptionRefusal(
            kind: .invalid, field: "plan", message: open.isEmpty ? "\(reason); no plan is open" : "\(reason); open plans: \(listed)")
    }

    /// Who decides a new subscription's trial.
    public enum TrialGrant: Sendable, Equatable {
        /// The operator (the admin token): any `trial_days`; without one, the plan's default
        /// for a tenant's first subscription and none for a returning tenant.
        case byOperator
        /// The tenant itself (its own key): the plan's trial is an offer for a tenant's
        /// first subscription. It may ask for a shorter one, never a longer one; a tenant
        /// that had a subscription before gets none (cancelling in a trial and subscribing
        /// again would otherwise be usage never billed, again and again).
        case selfService
    }

    /// Starts a subscription on the newest version of the plan `slug`, with `trialDays`
    /// of trial (nil: the plan's default, as `grant` allows); a tenant has at most one
    /// that has not ended.
    public func create(
        tenant: UUID, plan slug: String, start: Date, trialDays: Int?, grant: TrialGrant, now: Date
    ) async throws -> SubscriptionView {
        try await pool.withTransaction { connection in
            let plans = try SubscriptionRecords.plans(on: connection)
            guard let plan = plans[slug], !plans.archived.contains(slug) else { throw Self.notOpen(slug, plans: plans) }
            try Self.holdOpen(slug, on: connection)
            // Serialize subscription changes of one tenant.
            try connection.query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 11))", [tenant])
            try Self.billInCurrency(of: plan, tenant: tenant, firstSubscription: true, on: connection)
            let open = try connection.query(
                """
                SELECT id, ends_at FROM subscriptions
                 WHERE tenant_id = $1 AND (ends_at IS NULL OR (ends_at > $2 AND ends_at > started_at))
                 ORDER BY ends_at NULLS FIRST LIMIT 1
                """, [tenant, start])
            if let row = open.first {
                // One that ends, but after the asked start, overlaps it: say when it ends.
                let message =
                    if let ends = try row.decode(1, as: Date?.self) {
                        "already has a subscription until \(ends.ISO8601Format()); start this one then or later, or change that one instead"
                    } else {
                        "already has a subscription that has not ended; change or cancel it instead"
                    }
                throw SubscriptionRefusal(kind: .conflict, field: "tenant_id", message: message)
            }
            let asked = trialDays
            var trialDays = asked ?? plan.trialDays
            // The plan's default is an offer for a first subscription, whoever asks: the
            // operator grants a returning tenant a trial by naming `trial_days` (left out, the
            // admin token gave a second default trial silently).
            if grant == .byOperator, asked == nil, trialDays > 0, try Self.hadSubscription(tenant, on: connection) {
                trialDays = 0
            }
            if grant == .selfService, trialDays > 0 {
                guard trialDays <= plan.trialDays else {
                    throw SubscriptionRefusal(
                        kind: .forbidden, field: "trial_days",
                        message: "a tenant key may shorten the plan's trial (\(plan.trialDays) days) but not lengthen it; "
                            + "ask the operator (admin token) for a longer one")
                }
                if try Self.hadSubscription(tenant, on: connection) {
                    // The plan's offer is for a first subscription: a returning tenant pays from the start.
                    guard asked == nil else {
                        throw SubscriptionRefusal(
                            kind: .forbidden, field: "trial_days",
                            message: "a trial is for a tenant's first subscription, and this tenant had one; "
                                + "ask the operator (admin token) to grant another")
                    }
                    trialDays = 0
                }
            }
            let trialEnd = trialDays > 0 ? start.addingTimeInterval(Double(trialDays) * 86_400) : nil
            if let trialEnd, trialEnd >= Self.yearTenThousand {
                throw SubscriptionRefusal(
                    kind: .invalid, field: "trial_days", message: "would end the trial after 9999-12-31; start earlier or ask for a shorter trial")
            }
            // Its first period must end by 9999 too: one ending in year 10000 could never be billed.
            let firstEnd = BillingCalendar(anchor: Instant(trialEnd ?? start), interval: plan.interval).boundary(1)
            if firstEnd.date >= Self.yearTenThousand {
                throw SubscriptionRefusal(
                    kind: .invalid, field: trialEnd == nil ? "start" : "trial_days",
                    message: "its first period would end at \(firstEnd.date.ISO8601Format()), after 9999-12-31, and could never be billed; "
                        + (trialEnd == nil ? "start earlier" : "start earlier or ask for a shorter trial"))
            }
            let id = try connection.query(
                """
                INSERT INTO subscriptions (tenant_id, status, started_at, trial_end, anchor, billing_interval)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
                """,
                [tenant, trialEnd == nil ? "active" : "trialing", start, trialEnd, trialEnd ?? start, plan.interval.rawValue]
            )[0].decode(0, as: UUID.self)
            try connection.query(
                """
                INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                VALUES ($1, $2, $3, $4, 'start', $5)
                """, [id, slug, plan.version, start, now])
            return try Self.view(id, plans: plans, now: now, on: connection)
        }
    }

    /// Changes the plan as asked at `at`; returns the subscription with the change.
    public func changePlan(id: UUID, to slug: String, at: Date, now: Date) async throws -> SubscriptionView {
        try await pool.withTransaction { connection in
            let plans = try SubscriptionRecords.plans(on: connection)
            var stored = try Self.locked(id, plans: plans, on: connection)
            guard let plan = plans[slug], !plans.archived.contains(slug) else { throw Self.notOpen(slug, plans: plans) }
            try Self.holdOpen(slug, on: connection)
            try Self.billInCurrency(of: plan, tenant: stored.tenantID, firstSubscription: false, on: connection)
            // Before a scheduled subscription starts (`status: scheduled`), nothing of it is used:
            // a change asked before its start, now included, is to the plan it will start on —
            // upgrade or downgrade alike (a downgrade has no period to wait for).
            let startsLater = Instant(now) < stored.start && stored.timeline.endsAt != stored.start
            let requested = startsLater ? max(Instant(at), stored.start) : Instant(at)
            guard stored.covers(requested) else {
                throw SubscriptionRefusal(kind: .conflict, field: "at", message: "is outside the subscription's life")
            }
            let current = stored.timeline.plan(at: requested)
            // Another version of the plan in force is a migration, from a period start.
            guard current.slug != slug else {
                throw SubscriptionRefusal(
                    kind: .conflict, field: "plan",
                    message: current.version == plan.version
                        ? "is already the plan in force at that time"
                        : "is the plan in force (version \(current.version)); move to version \(plan.version) from a period start with "
                            + "POST /v1/plans/\(slug)/migrations")
            }
            // The calendar is the subscription's: a plan billed at another interval cannot take over its periods.
            guard plan.interval == stored.timeline.calendar.interval else {
                throw SubscriptionRefusal(
                    kind: .conflict, field: "plan",
                    message: "bills every \(plan.interval.rawValue), and this subscription's periods are a "
                        + "\(stored.timeline.calendar.interval.rawValue) long; cancel it and start a new subscription")
            }
            var timeline = stored.timeline
            var effective = timeline.changePlan(to: plan, requestedAt: requested)
            if startsLater && requested == stored.start { effective = stored.start }
            if let endsAt = timeline.endsAt, effective >= endsAt {
                throw SubscriptionRefusal(kind: .conflict, field: "at", message: "the change would take effect after the subscription ends")
            }
            try Self.refuseBeyondYear9999(effective, what: "the change")
            try Self.refuseIfInvoiced(id, from: effective, on: connection, what: "the plan change")
            try connection.query(
                "DELETE FROM subscription_plan_changes WHERE subscription_id = $1 AND effective_at >= $2 AND kind <> 'start'",
                [id, effective.date])
            if effective == stored.start {
                // Changed at the very start: it is the plan it starts on.
                try connection.query(
                    "UPDATE subscription_plan_changes SET plan_slug = $2, plan_version = $3 WHERE subscription_id = $1 AND kind = 'start'",
                    [id, slug, plan.version])
            } else {
                try connection.query(
                    """
                    INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    """, [id, slug, plan.version, effective.date, current.isUpgrade(to: plan) ? "upgrade" : "downgrade", at])
            }
            stored = try Self.locked(id, plans: plans, on: connection)
            return try Self.view(stored, now: now)
        }
    }

    /// Cancels now (`atPeriodEnd` false: the period containing `at` ends there) or
    /// at the end of the period containing `at`.
    public func cancel(id: UUID, at: Date, atPeriodEnd: Bool, now: Date) async throws -> SubscriptionView {
        try await pool.withTransaction { connection in
            let plans = try SubscriptionRecords.plans(on: connection)
            try Self.cancel(id, at: at, atPeriodEnd: atPeriodEnd, now: now, plans: plans, on: connection)
            return try Self.view(id, plans: plans, now: now, on: connection)
        }
    }

    /// The cancellation inside the caller's transaction (also applied for Stripe's
    /// subscription events); refused like the API's. A subscription that has not started
    /// by `now`, canceled (now or at period end) as of its start or before, never starts: it
    /// ends where it starts, with no trial and no period. One that has started cannot be
    /// canceled before its start (its usage so far would go unbilled).
    public static func cancel(
        _ id: UUID, at: Date, atPeriodEnd: Bool, now: Date, plans: PlanCatalog, on connection: isolated PostgresConnection
    ) throws {
        let stored = try Self.locked(id, plans: plans, on: connection)
        let requested = Instant(at)
        if let ends = stored.timeline.endsAt {
            // Set to end later, it may be canceled to end sooner (now, at a time, or at the end
            // of an earlier period, as Stripe allows): the end moves earlier, never later, and
            // never onto an invoiced period. Not started yet and canceled as of its start or
            // before, it never starts.
            let neverStarts = Instant(now) < stored.start && requested <= stored.start
            var sooner = stored.timeline
            sooner.cancel(atPeriodEnd ? .atPeriodEnd(requestedAt: requested) : .immediately(at: requested))
            if ends > Instant(now), ends > stored.start, let earlier = neverStarts ? stored.start : sooner.endsAt, earlier < ends,
                earlier > stored.start || neverStarts
            {
                try Self.refuseIfInvoiced(id, from: earlier, on: connection, what: "the cancellation")
                try connection.query("UPDATE subscriptions SET ends_at = $2, cancel_requested_at = $3 WHERE id = $1", [id, earlier.date, at])
                return
            }
            // Set to end at a later time, it is still active until then: say so, not "canceled".
            let end = ends.date.ISO8601Format()
            throw SubscriptionRefusal(
                kind: .conflict, field: "at",
                message: ends <= Instant(now)
                    ? "the subscription is already canceled"
                    : ends <= stored.start
                        ? "the subscription is already canceled; it never starts"
                        : "the subscription is already set to end at \(end); a cancellation can only bring that end forward "
                            + "(to a time, or a period's end, before \(end) and after its start)")
        }
        let endsAt: Instant
        if Instant(now) < stored.start, requested <= stored.start {
            endsAt = stored.start
        } else {
            var timeline = stored.timeline
            timeline.cancel(atPeriodEnd ? .atPeriodEnd(requestedAt: requested) : .immediately(at: requested))
            guard let ending = timeline.endsAt, ending > stored.start else {
                throw SubscriptionRefusal(
                    kind: .conflict, field: "at", message: "must be after the subscription's start (it has started, so it ends after it)")
            }
            endsAt = ending
        }
        try Self.refuseBeyondYear9999(endsAt, what: "the cancellation")
        try Self.refuseIfInvoiced(id, from: endsAt, on: connection, what: "the cancellation")
        try connection.query(
            "UPDATE subscriptions SET ends_at = $2, cancel_requested_at = $3 WHERE id = $1", [id, endsAt.date, at])
    }

    /// The tenant's subscriptions, oldest first, as of `now`.
    public func list(tenant: UUID, now: Date) async throws -> [SubscriptionView] {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            let plans = try SubscriptionRecords.plans(on: connection)
            return try (SubscriptionRecords.subscriptions(of: [tenant], plans: plans, on: connection)[tenant] ?? [])
                .map { try Self.view($0, now: now) }
        }
    }

    /// The subscription's tenant, or nil when there is no such subscription.
    public func tenant(of id: UUID) async throws -> UUID? {
        try await pool.query("SELECT tenant_id FROM subscriptions WHERE id = $1", [id]).first?.decode(0, as: UUID.self)
    }

    /// Whether the tenant had a subscription before: the plan's trial is an offer for a
    /// first one. One canceled before it started gave nothing and does not count.
    static func hadSubscription(_ tenant: UUID, on connection: isolated PostgresConnection) throws -> Bool {
        try !connection.query(
            "SELECT 1 FROM subscriptions WHERE tenant_id = $1 AND (ends_at IS NULL OR ends_at > started_at) LIMIT 1", [tenant]
        ).isEmpty
    }

    /// Holds the plan code open (not archived) until the transaction ends: an archive waits
    /// for it, or it sees the archive and refuses.
    static func holdOpen(_ slug: String, on connection: isolated PostgresConnection) throws {
        let row = try connection.query("SELECT archived_at IS NOT NULL FROM subscription_plans WHERE slug = $1 FOR SHARE", [slug]).first
        guard let row, try !row.decode(0, as: Bool.self) else {
            throw SubscriptionRefusal(kind: .invalid, field: "plan", message: "is archived or gone; it takes no new subscriptions")
        }
    }

    /// One tenant bills in one currency (SPEC §2.1): the tenant's is the plan's, or becomes
    /// it when this is the tenant's first subscription and nothing was invoiced yet;
    /// otherwise a plan of another currency is refused (409).
    static func billInCurrency(of plan: Plan, tenant: UUID, firstSubscription: Bool, on connection: isolated PostgresConnection) throws {
        guard
            let row = try connection.query(
                """
                SELECT t.currency,
                       EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = t.id AND (s.ends_at IS NULL OR s.ends_at > s.started_at)),
                       EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = t.id)
                  FROM tenants t WHERE t.id = $1 FOR NO KEY UPDATE
                """, [tenant]
            ).first
        else { throw SubscriptionRefusal(kind: .notFound, field: "tenant_id", message: "no such tenant") }
        let currency = try row.decode(0, as: String.self)
        guard currency != plan.currency else { return }
        if firstSubscription, try !row.decode(1, as: Bool.self), try !row.decode(2, as: Bool.self) {
            try connection.query("UPDATE tenants SET currency = $2 WHERE id = $1", [tenant, plan.currency])
            return
        }
        throw SubscriptionRefusal(
            kind: .conflict, field: "plan",
            message: "bills in \(plan.currency.uppercased()), and the tenant bills in \(currency.uppercased()): one tenant bills in one currency")
    }

    /// A period invoiced at or after `instant` would change: refuse (409).
    static func refuseIfInvoiced(_ id: UUID, from instant: Instant, on connection: isolated PostgresConnection, what: String) throws {
        let invoiced = try connection.query(
            """
            SELECT number, period_start, period_end FROM invoices
             WHERE subscription_id = $1 AND kind = 'period' AND period_end > $2 ORDER BY period_start LIMIT 1
            """, [id, instant.date])
        guard let row = invoiced.first else { return }
        // Times as the API writes them (RFC 3339), not PostgreSQL's text.
        let span = try [1, 2].map { try row.decode($0, as: Date.self).ISO8601Format() }
        throw SubscriptionRefusal(
            kind: .conflict, field: "at",
            message: "\(what) would alter a period already invoiced (\(row.text(0) ?? "an invoice") for "
                + "\(span[0]) – \(span[1])); corrections go on later invoices")
    }

    private static func locked(_ id: UUID, plans: PlanCatalog, on connection: isolated PostgresConnection) throws -> StoredSubscription {
        let tenant = try connection.query("SELECT tenant_id FROM subscriptions WHERE id = $1 FOR UPDATE", [id]).first
        guard let tenant = try tenant?.decode(0, as: UUID.self),
            let stored = try SubscriptionRecords.subscriptions(of: [tenant], plans: plans, on: connection)[tenant]?.first(where: { $0.id == id })
        else { throw SubscriptionRefusal(kind: .notFound, field: "id", message: "no such subscription") }
        return stored
    }

    private static func view(_ id: UUID, plans: PlanCatalog, now: Date, on connection: isolated PostgresConnection) throws -> SubscriptionView {
        try view(try locked(id, plans: plans, on: connection), now: now)
    }

    static func view(_ stored: StoredSubscription, now: Date) throws -> SubscriptionView {
        let timeline = stored.timeline
        let instant = Instant(now)
        let status: String
        if let endsAt = timeline.endsAt, endsAt <= instant || endsAt == stored.start {
            // Ended, or canceled before it started.
            status = "canceled"
        } else if instant < stored.start {
            // Neither its trial nor its first period has begun: showing it `trialing` or
            // `active` told finance it was running (and a tenant that it was billed).
            status = "scheduled"
        } else if let trial = timeline.trial, instant < trial.end {
            status = "trialing"
        } else {
            status = "active"
        }
        let current = stored.period(containing: instant).map { SubscriptionView.Span(start: $0.span.start.date, end: $0.span.end.date) }
        let start = stored.start
        var changes = [
            SubscriptionView.Change(
                plan: timeline.initialPlan.slug, planVersion: timeline.initialPlan.version, effectiveAt: start.date, kind: "start")
        ]
        changes += timeline.changes.map { change in
            let before = timeline.plan(at: change.effectiveAt.advanced(byMicroseconds: -1))
            let kind = before.slug == change.plan.slug ? "migration" : before.isUpgrade(to: change.plan) ? "upgrade" : "downgrade"
            return SubscriptionView.Change(
                plan: change.plan.slug, planVersion: change.plan.version, effectiveAt: change.effectiveAt.date, kind: kind)
        }
        let inForce = timeline.plan(at: min(instant, timeline.endsAt?.advanced(byMicroseconds: -1) ?? instant))
        return SubscriptionView(
            id: stored.id, tenantID: stored.tenantID, status: status,
            plan: inForce.slug, planVersion: inForce.version,
            startedAt: start.date, trialEnd: timeline.heldTrial?.end.date, anchor: timeline.calendar.anchor.date,
            interval: timeline.calendar.interval.rawValue, endsAt: timeline.endsAt?.date, currentPeriod: current, changes: changes)
    }
}
