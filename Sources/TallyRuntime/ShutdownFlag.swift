import Synchronization

/// Set once graceful shutdown begins: a worker's consumers finish what they hold and stop.
public final class ShutdownFlag: Sendable {
    private let flag = Atomic(false)

    public init() {}

    public var isSet: Bool { flag.load(ordering: .acquiring) }

    public func set() { flag.store(true, ordering: .releasing) }
}
