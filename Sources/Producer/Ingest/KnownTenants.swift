import Foundation
import TallyStore

/// Which tenant ids exist, remembered briefly so the ingest path does not query
/// the database for every event of every request.
actor KnownTenants {
    private let store: TenantStore
    private let lifetime: Duration
    private var known: [UUID: ContinuousClock.Instant] = [:]

    init(store: TenantStore, lifetime: Duration = .seconds(60)) {
        self.store = store
        self.lifetime = lifetime
    }

    /// The ids of `ids` that name no tenant.
    func unknown(among ids: Set<UUID>) async throws -> Set<UUID> {
        let now = ContinuousClock.now
        var missing: Set<UUID> = []
        for id in ids where (known[id].map { $0 <= now } ?? true) {
            if try await store.tenant(id: id) != nil {
                known[id] = now.advanced(by: lifetime)
            } else {
                missing.insert(id)
            }
        }
        return missing
    }
}
