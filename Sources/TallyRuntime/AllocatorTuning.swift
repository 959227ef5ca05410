import CMalloc

/// glibc malloc settings for a long-running worker that handles large batches.
///
/// By default glibc raises its mmap threshold each time a large block is freed, so after
/// the first multi-megabyte batch buffers come from the heap, and the holes they leave
/// only grow the heap: the Aggregator's peak RSS over a 1,000,000-event drain across
/// 50,000 tenants reached 146–149 MiB (130 MiB over 200,000 events). A fixed 1 MiB
/// threshold gives blocks of a megabyte or more back to the kernel when freed (130 MiB
/// over the same drain, at the same rate); message bodies and smaller buffers stay on
/// the heap. Two arenas, not one per core times eight, bound the rest.
///
/// An operator's own `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `glibc.malloc.*`
/// tunable wins: glibc has read it at start-up, and the setting is left alone. (Arenas
/// the runtime's threads made before `apply` stay; the cap applies to new ones.)
public enum AllocatorTuning {
    public enum Parameter: String, Sendable, CaseIterable {
        case arenaMax = "MALLOC_ARENA_MAX"
        case mmapThreshold = "MALLOC_MMAP_THRESHOLD_"
    }

    /// What a worker sets: at most two arenas, and mmap for blocks from 1 MiB.
    public static let defaults: [Parameter: Int32] = [.arenaMax: 2, .mmapThreshold: 1 << 20]

    /// The settings `apply` makes in `environment`: the defaults the operator did not set,
    /// none when the operator tunes malloc through `GLIBC_TUNABLES`.
    public static func settings(environment: [String: String]) -> [Parameter: Int32] {
        if environment["GLIBC_TUNABLES"]?.contains("glibc.malloc.") == true { return [:] }
        return defaults.filter { parameter, _ in environment[parameter.rawValue] == nil }
    }

    /// Applies `settings(environment:)`; returns the parameters glibc refused.
    @discardableResult
    public static func apply(environment: [String: String]) -> [Parameter] {
        settings(environment: environment).compactMap { parameter, value in
            let option =
                switch parameter {
                case .arenaMax: M_ARENA_MAX
                case .mmapThreshold: M_MMAP_THRESHOLD
                }
            return mallopt(option, value) == 1 ? nil : parameter
        }
    }
}
