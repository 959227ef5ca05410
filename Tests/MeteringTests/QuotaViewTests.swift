import Foundation
import TallyTestSupport
import Testing
import UsageEvents

@testable import Metering

/// A `QuotaView` merges the states of one period metric by metric (the Aggregator sends
/// only the metrics a batch counted), keeping for each the position with more events,
/// whatever order the broadcasts arrive in.
@Suite("Quota view: states merged per metric")
struct QuotaViewTests {
    let tenant = UUID()
    let start = Date(timeIntervalSince1970: 1_790_000_000)
    var end: Date { start.addingTimeInterval(30 * 86_400) }

    func state(
        at seconds: Double, periodStart: Date? = nil, subscription: QuotaState.Subscription = .active,
        _ metrics: [String: QuotaState.Metric]
    ) -> QuotaState {
        let periodStart = periodStart ?? start
        return QuotaState(
            tenantID: tenant, asOf: start.addingTimeInterval(seconds), periodStart: periodStart,
            periodEnd: periodStart.addingTimeInterval(30 * 86_400), subscription: subscription, metrics: metrics)
    }

    func hard(_ used: Int64, events: Int64?, quota: Int64 = 10) -> QuotaState.Metric {
        QuotaState.Metric(used: Quantity(units: used), quota: Quantity(units: quota), enforcement: .hard, events: events)
    }

    @Test("a state naming one metric leaves the others as held; the position with more events wins even when it came first")
    func mergesPerMetric() {
        let view = QuotaView()
        view.apply(state(at: 1, ["api_calls": hard(4, events: 4), "estimates": hard(10, events: 10)]))
        view.apply(state(at: 2, ["api_calls": hard(9, events: 9)]))
        let now = start.addingTimeInterval(3)
        #expect(view.decision(tenant: tenant, metric: "api_calls", now: now) == .allow)
        #expect(view.decision(tenant: tenant, metric: "estimates", now: now) == .exceeded(used: Quantity(units: 10), quota: Quantity(units: 10)))
        // A batch that committed later (11 events) is broadcast before one that committed
        // earlier (6): the earlier one, arriving last and stamped later, does not take it back.
        view.apply(state(at: 4, ["api_calls": hard(11, events: 11)]))
        view.apply(state(at: 5, ["api_calls": hard(6, events: 6)]))
        #expect(
            view.decision(tenant: tenant, metric: "api_calls", now: now) == .exceeded(used: Quantity(units: 11), quota: Quantity(units: 10)))
    }

    @Test("the subscription is the newer state's; another period replaces the state held, an older period's state is dropped")
    func periods() {
        let view = QuotaView()
        view.apply(state(at: 1, ["api_calls": hard(12, events: 12)]))
        view.apply(state(at: 2, subscription: .none, [:]))
        #expect(view.decision(tenant: tenant, metric: "api_calls", now: start.addingTimeInterval(3)) == .noSubscription)
        let next = end
        view.apply(state(at: 30 * 86_400 + 1, periodStart: next, ["estimates": hard(1, events: 1)]))
        let later = next.addingTimeInterval(2)
        // The new period starts from what its states say: api_calls has none yet.
        #expect(view.decision(tenant: tenant, metric: "api_calls", now: later) == .allow)
        view.apply(state(at: 10, ["api_calls": hard(50, events: 50)]))
        #expect(view.decision(tenant: tenant, metric: "api_calls", now: later) == .allow)
    }

    @Test("positions without event counts: the newer state's wins")
    func withoutEvents() {
        let merged = QuotaView.merging(
            state(at: 1, ["api_calls": hard(3, events: nil)]), into: state(at: 2, ["api_calls": hard(12, events: nil)]))
        #expect(merged.metrics["api_calls"]?.used == Quantity(units: 12))
        let taken = QuotaView.merging(
            state(at: 3, ["api_calls": hard(3, events: nil)]), into: state(at: 2, ["api_calls": hard(12, events: nil)]))
        #expect(taken.metrics["api_calls"]?.used == Quantity(units: 3))
    }

    @Test("random commits of three metrics broadcast in random order: the view ends with each metric's last committed position")
    func randomOrder() {
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SeededRandom(seed: seed)
        let names = ["api_calls", "estimates", "users"]
        for round in 0..<300 {
            // Commits in order: each adds events to one or more metrics and is broadcast
            // with the positions it counted, stamped with a time that may run backwards.
            var totals: [String: Int64] = [:]
            var broadcasts: [QuotaState] = []
            for commit in 0..<Int(1 + random.next() % 12) {
                var metrics: [String: QuotaState.Metric] = [:]
                for name in names where random.next() % 2 == 0 {
                    totals[name, default: 0] += Int64(1 + random.next() % 5)
                    metrics[name] = hard(totals[name]!, events: totals[name]!)
                }
                broadcasts.append(state(at: Double(commit) + Double(random.next() % 5), metrics))
            }
            for index in broadcasts.indices.reversed() {
                broadcasts.swapAt(index, Int(random.next() % UInt64(index + 1)))
            }
            let view = QuotaView()
            for broadcast in broadcasts { view.apply(broadcast) }
            let now = start.addingTimeInterval(100)
            for name in names {
                let expected: QuotaView.Decision =
                    totals[name].map { $0 >= 10 ? .exceeded(used: Quantity(units: $0), quota: Quantity(units: 10)) : .allow } ?? .allow
                #expect(view.decision(tenant: tenant, metric: name, now: now) == expected, "seed \(seed), round \(round), \(name)")
            }
        }
    }
}
