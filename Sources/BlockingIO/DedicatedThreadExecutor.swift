import Foundation

/// A serial executor backed by one dedicated OS thread.
///
/// The C clients we wrap (rabbitmq-c, libpq, libcurl) block in system calls and
/// require that a connection be used from one thread at a time. An actor whose
/// `unownedExecutor` is one of these runs every method on that thread, so blocking
/// calls never occupy Swift's cooperative thread pool, and the C handle it owns
/// is only ever touched by a single thread.
public final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    // `@unchecked Sendable`: `jobs` and `isShuttingDown` are only read or written
    // while `condition` is locked.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var isShuttingDown = false
    private var isThreadRunning = false
    private var threadID: pthread_t?
    private let name: String

    /// Starts the thread; `name` shows up in debuggers and `top -H`.
    public init(name: String) {
        self.name = name
        condition.lock()
        startThread()
        condition.unlock()
    }

    /// Must be called with `condition` locked.
    private func startThread() {
        isThreadRunning = true
        let thread = Thread { [self] in self.runLoop() }
        thread.name = name
        thread.start()
    }

    /// Whether the caller runs on this executor's thread; clients assert it
    /// before touching a C handle.
    public var isCurrentThread: Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let threadID else { return false }
        return pthread_equal(threadID, pthread_self()) != 0
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        // A job that arrives after shutdown let the thread end (e.g. an actor's last
        // `close` resuming) gets a thread again: an executor never strands work.
        if !isThreadRunning { startThread() }
        condition.signal()
        condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the thread finish the jobs already queued, then end. Jobs enqueued
    /// afterwards still run: the executor never drops work it was given.
    public func shutdown() {
        condition.lock()
        isShuttingDown = true
        condition.signal()
        condition.unlock()
    }

    private func nextJob() -> UnownedJob? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty {
            if isShuttingDown {
                isThreadRunning = false
                threadID = nil
                return nil
            }
            condition.wait()
        }
        return jobs.removeFirst()
    }

    private func runLoop() {
        condition.lock()
        threadID = pthread_self()
        condition.unlock()
        while let job = nextJob() {
            // Isolated to this executor only: nonisolated code the job awaits goes back
            // to the global pool instead of sticking to this thread.
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}
