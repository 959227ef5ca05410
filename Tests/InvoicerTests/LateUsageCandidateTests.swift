import BillingEngine
import Foundation
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

@testable import Invoicing

/// The billing run's first pass over ended subscriptions (`lateUsageCandidates`) keeps
/// every one with late usage — it may keep more, never fewer — over the real pipeline.
@Suite("Invoicer: late-usage candidates keep every subscription with late usage")
struct LateUsageCandidateTests {
    /// What is done to an ended subscription's usage after its period was invoiced.
    enum Case: CaseIterable {
        case unchanged, lateEvents
        /// Its period's totals gone (as for a period whose events predate them): read from the rollups.
        case totalsGone, totalsGoneThenLateEvents
        /// No usage at all, billed zero.
        case noUsage, noUsageThenLateEvents
    }

    @Test("each case: late usage implies a candidate; unchanged and usage-free periods are left out")
    func candidatesCoverLateUsage() async throws {
        let fixture = try await InvoicingFixture.make()
        let start = midnight(daysAgo: 50)
        let end = adding(months: 1, to: start)
        let inPeriod = start.addingTimeInterval(86_400)
        var subjects: [(Case, tenant: UUID, subscription: UUID)] = []
        for subject in Case.allCases {
            let tenant = try await fixture.tenant()
            let subscription = try await fixture.subscribe(tenant, plan: "starter", start: start, endsAt: end)
            subjects.append((subject, tenant, subscription))
            switch subject {
            case .noUsage, .noUsageThenLateEvents: break
            default:
                try await fixture.sendUsage(
                    (0..<30).map { usageEvent("on-time-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }, tenant: tenant,
                    expected: 30)
            }
        }
        let tenants = subjects.map(\.tenant)
        let run = try #require(try await fixture.bill(asOf: end.addingTimeInterval(7200), tenants: tenants))
        #expect(run.issued == Case.allCases.count)

        for (subject, tenant, _) in subjects {
            switch subject {
            case .totalsGone, .totalsGoneThenLateEvents:
                try await fixture.database.query("DELETE FROM usage_periods WHERE tenant_id = $1", [tenant])
            default: break
            }
            switch subject {
            case .lateEvents, .totalsGoneThenLateEvents:
                // Late events go through the Aggregator, which completes the period again
                // for `totalsGoneThenLateEvents`; delete its totals once more afterwards.
                try await fixture.sendUsage(
                    (0..<30).map { usageEvent("late-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }, tenant: tenant, expected: 60)
            case .noUsageThenLateEvents:
                try await fixture.sendUsage(
                    (0..<60).map { usageEvent("late-\($0)", tenant: tenant, metric: "estimates", at: inPeriod) }, tenant: tenant, expected: 60)
            default: break
            }
            if subject == .totalsGoneThenLateEvents {
                try await fixture.database.query("DELETE FROM usage_periods WHERE tenant_id = $1", [tenant])
            }
        }

        let deadline = Instant(end.addingTimeInterval(3 * 86_400 - 3600))
        let (candidates, late) = try await fixture.database.withTransaction { connection in
            let plans = try SubscriptionRecords.plans(on: connection)
            let stored = try SubscriptionRecords.subscriptions(of: tenants, plans: plans, on: connection).values.flatMap { $0 }
            let catalog = try MetricCatalogRecords.load(on: connection)
            let checked = try stored.map { subscription in
                (subscription, try BillingRunPlanner.periodItems(subscription, deadline: deadline, invoiced: []).index)
            }
            let candidates = try InvoiceGenerator.lateUsageCandidates(checked, catalog: catalog, on: connection)
            let late = try InvoiceGenerator.lateUsage(of: stored.map { ($0, nil) }, catalog: catalog, on: connection)
            return (candidates, Set(late.filter { !$0.value.isEmpty }.keys))
        }
        #expect(late.isSubset(of: candidates), "late \(late), candidates \(candidates)")
        for (subject, _, subscription) in subjects {
            switch subject {
            case .unchanged, .noUsage:
                #expect(!candidates.contains(subscription), "\(subject)")
                #expect(!late.contains(subscription), "\(subject)")
            case .totalsGone:
                // Its values come from the rollups: kept, though nothing changed.
                #expect(candidates.contains(subscription), "\(subject)")
                #expect(!late.contains(subscription), "\(subject)")
            case .lateEvents, .totalsGoneThenLateEvents, .noUsageThenLateEvents:
                #expect(candidates.contains(subscription) && late.contains(subscription), "\(subject)")
            }
        }

        // The run itself: an adjustment for exactly the subscriptions with late usage.
        let second = try #require(try await fixture.bill(asOf: end.addingTimeInterval(3 * 86_400), tenants: tenants))
        #expect(second.issued == late.count)
        for (subject, tenant, _) in subjects {
            let kinds = try await fixture.invoices(tenant).map(\.kind).sorted()
            switch subject {
            case .lateEvents, .totalsGoneThenLateEvents, .noUsageThenLateEvents: #expect(kinds == ["adjustment", "period"], "\(subject)")
            default: #expect(kinds == ["period"], "\(subject)")
            }
        }
        await fixture.close()
    }
}
