import BlockingIO
import Foundation
import Testing

/// An actor pinned to one dedicated thread, as the C clients are.
private actor Pinned {
    let executor: DedicatedThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var log: [Int] = []

    init(_ executor: DedicatedThreadExecutor) {
        self.executor = executor
    }

    func onOwnThread() -> Bool { executor.isCurrentThread }

    func append(_ value: Int) -> Int {
        log.append(value)
        return log.count
    }
}

@Suite("Dedicated thread executor")
struct DedicatedThreadExecutorTests {
    @Test("an actor on the executor always runs on its thread, never the caller's")
    func confinement() async {
        let executor = DedicatedThreadExecutor(name: "test-thread")
        let pinned = Pinned(executor)
        for _ in 0..<200 {
            #expect(await pinned.onOwnThread())
        }
        #expect(!executor.isCurrentThread)
        executor.shutdown()
    }

    @Test("work that arrives after shutdown still runs, on a thread of the executor", .timeLimit(.minutes(1)))
    func workAfterShutdown() async {
        let executor = DedicatedThreadExecutor(name: "test-shutdown")
        let pinned = Pinned(executor)
        #expect(await pinned.append(1) == 1)
        executor.shutdown()
        // Give the old thread every chance to have ended, then call again: the job must not be stranded.
        for value in 2...50 {
            #expect(await pinned.append(value) == value)
            #expect(await pinned.onOwnThread())
        }
        executor.shutdown()
    }

    @Test("concurrent callers are serialized: no update is lost")
    func serialization() async {
        let executor = DedicatedThreadExecutor(name: "test-serial")
        let pinned = Pinned(executor)
        let counts = await withTaskGroup(of: Int.self) { group in
            for value in 0..<1_000 { group.addTask { await pinned.append(value) } }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(counts.sorted() == Array(1...1_000))
        executor.shutdown()
    }

    /// More blocked actors than the cooperative pool has threads: if their work ran on
    /// the pool, the sum below could never be computed and the time limit would fail the test.
    @Test("blocking calls on executors do not stall the cooperative pool", .timeLimit(.minutes(1)))
    func blockingDoesNotStarvePool() async {
        let width = ProcessInfo.processInfo.activeProcessorCount + 2
        let executors = (0..<width).map { DedicatedThreadExecutor(name: "test-blocking-\($0)") }
        let gate = DispatchSemaphore(value: 0)
        await withTaskGroup(of: Void.self) { blocked in
            for executor in executors {
                blocked.addTask { await Pinned(executor).blockUntil(gate) }
            }
            let sum = await withTaskGroup(of: Int.self) { group in
                for value in 1...100 { group.addTask { value } }
                return await group.reduce(0, +)
            }
            #expect(sum == 5050)
            for _ in executors { gate.signal() }
        }
        executors.forEach { $0.shutdown() }
    }
}

extension Pinned {
    func blockUntil(_ gate: DispatchSemaphore) {
        gate.wait()
    }
}
