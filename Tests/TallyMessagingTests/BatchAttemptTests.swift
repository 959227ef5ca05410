import TallyMessaging
import TallyTestSupport
import Testing

@Suite("The worker loop's decisions (BatchAttempt)")
struct BatchAttemptTests {
    static let policy = RetryPolicy.standard
    static let queue = "work.queue"

    /// What the worker should do, worked out naively from the whole history of the batch.
    static func reference(
        size: Int, attempt: Int, history: [WorkFailure], failure: WorkFailure, shuttingDown: Bool
    ) -> WorkAction {
        let holds = history.filter { if case .dependencyDown = $0 { true } else { false } }.count
        let conflicts = min(history.filter { $0 == .conflict }.count, 3)
        func failed(_ reason: String) -> WorkAction {
            if size > 1 { return .split }
            if attempt >= policy.maxAttempts { return .park(reason: "failed \(attempt) times: \(reason)") }
            let delay = policy.delays[min(attempt - 1, policy.delays.count - 1)]
            return .retryLater(routingKey: "\(queue).retry.\(delay.label)", attempt: attempt + 1)
        }
        switch failure {
        case .brokerGone: return .reconnect
        case .dependencyDown:
            if shuttingDown { return .abandon }
            var wait = Duration.milliseconds(100)
            for _ in 0..<holds { wait = min(wait * 2, .seconds(5)) }
            return .hold(after: wait)
        case .conflict:
            if conflicts < 3 { return .retryNow(after: .milliseconds(20 * (conflicts + 1))) }
            return failed("deadlock or serialization failure 4 times in a row")
        case .failed(let reason): return failed(reason)
        case .poison(let reason): return size > 1 ? .split : .park(reason: reason)
        }
    }

    static func randomFailure(_ random: inout SeededRandom) -> WorkFailure {
        switch Int.random(in: 0..<10, using: &random) {
        case 0...3: .dependencyDown("database")
        case 4...6: .conflict
        case 7: .failed("refused \(Int.random(in: 0..<5, using: &random))")
        case 8: .poison("unreadable")
        default: .brokerGone
        }
    }

    @Test("random failure sequences decide exactly as the naive reference", arguments: 0..<20)
    func matchesReference(seedOffset: UInt64) {
        let seed = 0x5EED_0000 + seedOffset
        var random = SeededRandom(seed: seed)
        for _ in 0..<500 {
            let size = Int.random(in: 1...4, using: &random)
            let attempt = Int.random(in: 1...7, using: &random)
            var decisions = BatchAttempt(size: size, attempt: attempt, queue: Self.queue, retry: Self.policy)
            var history: [WorkFailure] = []
            var shuttingDown = false
            // A batch's life: failures until one ends it (split, retry, park, abandon, reconnect).
            for _ in 0..<Int.random(in: 1...12, using: &random) {
                if !shuttingDown { shuttingDown = Int.random(in: 0..<15, using: &random) == 0 }
                let failure = Self.randomFailure(&random)
                let expected = Self.reference(size: size, attempt: attempt, history: history, failure: failure, shuttingDown: shuttingDown)
                let actual = decisions.next(after: failure, shuttingDown: shuttingDown)
                #expect(actual == expected, "seed \(seed): size \(size), attempt \(attempt), after \(history) then \(failure)")
                guard actual == expected else { return }
                history.append(failure)
                switch actual {
                case .retryNow, .hold: continue
                default: break
                }
                break
            }
        }
    }

    @Test("a dependency outage never costs an attempt: the same failure decides the same after any number of holds")
    func holdsCostNothing() {
        var random = SeededRandom(seed: 42)
        for _ in 0..<200 {
            let attempt = Int.random(in: 1...6, using: &random)
            var fresh = BatchAttempt(size: 1, attempt: attempt, queue: Self.queue, retry: Self.policy)
            var held = fresh
            for _ in 0..<Int.random(in: 1...50, using: &random) {
                guard case .hold(let wait) = held.next(after: .dependencyDown("smtp"), shuttingDown: false) else {
                    Issue.record("a dependency outage did not hold")
                    return
                }
                #expect(wait <= .seconds(5) && wait >= .milliseconds(100))
            }
            #expect(held.next(after: .failed("x"), shuttingDown: false) == fresh.next(after: .failed("x"), shuttingDown: false))
        }
    }

    @Test("a message is parked only after its last attempt, or at once when it is poison")
    func parkedOnlyWhenDue() {
        for attempt in 1...8 {
            var decisions = BatchAttempt(size: 1, attempt: attempt, queue: Self.queue, retry: Self.policy)
            let action = decisions.next(after: .failed("boom"), shuttingDown: false)
            if attempt >= Self.policy.maxAttempts {
                #expect(action == .park(reason: "failed \(attempt) times: boom"))
            } else {
                guard case .retryLater(_, let next) = action else {
                    Issue.record("attempt \(attempt) was not retried: \(action)")
                    continue
                }
                #expect(next == attempt + 1)
            }
            var poisoned = BatchAttempt(size: 1, attempt: attempt, queue: Self.queue, retry: Self.policy)
            #expect(poisoned.next(after: .poison("not JSON"), shuttingDown: false) == .park(reason: "not JSON"))
        }
    }
}
