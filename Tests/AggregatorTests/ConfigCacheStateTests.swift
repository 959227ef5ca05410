import Foundation
import TallyStore
import Testing

@testable import Aggregator

/// How the Aggregator's configuration cache applies reads of the change log
/// (`UsageConfigCache.State`): which tenants go, where the next read starts, and which
/// configurations loaded side by side with another consumer's read may be kept.
@Suite("Aggregator: configuration cache against the change log")
struct ConfigCacheStateTests {
    static let config = UsageConfigCache.TenantConfig(catalogVersion: 1, subscriptions: [], alerts: [])

    @Test("a first read starts the cache: nothing loaded before it is kept, the next read starts at its oldest running transaction")
    func firstRead() {
        var state = UsageConfigCache.State()
        let tenant = UUID()
        let generation = state.apply(ConfigVersions.Log(catalog: 1, next: 100, incomplete: true), capacity: 10)
        #expect(state.logNext == 100)
        #expect(!state.keeps(tenant, loadedAt: generation - 1))
        #expect(state.keeps(tenant, loadedAt: generation))
    }

    @Test("a logged tenant is dropped; a copy of it loaded after an earlier read is refused, the others' copies kept")
    func changedTenant() {
        var state = UsageConfigCache.State()
        let (changed, other) = (UUID(), UUID())
        let before = state.apply(ConfigVersions.Log(catalog: 1, next: 100, incomplete: true), capacity: 10)
        state.tenants[changed] = Self.config
        state.tenants[other] = Self.config
        // Another consumer's read sees a change of `changed`.
        let after = state.apply(ConfigVersions.Log(catalog: 1, changed: [changed], next: 120), capacity: 10)
        #expect(after == before + 1)
        #expect(state.tenants[changed] == nil)
        #expect(state.tenants[other] != nil)
        // A copy loaded after the first read, arriving now, may predate the change.
        #expect(!state.keeps(changed, loadedAt: before))
        #expect(state.keeps(other, loadedAt: before))
        // One loaded after the read that saw the change is at least as new as it.
        #expect(state.keeps(changed, loadedAt: after))
        // A read with nothing logged changes nothing but where the next read starts.
        #expect(state.apply(ConfigVersions.Log(catalog: 1, next: 130), capacity: 10) == after)
        #expect(state.logNext == 130)
    }

    @Test("an older read applied after a newer one does not move the next read back")
    func olderReadLater() {
        var state = UsageConfigCache.State()
        _ = state.apply(ConfigVersions.Log(catalog: 1, next: 100, incomplete: true), capacity: 10)
        _ = state.apply(ConfigVersions.Log(catalog: 1, next: 150), capacity: 10)
        _ = state.apply(ConfigVersions.Log(catalog: 1, next: 120), capacity: 10)
        #expect(state.logNext == 150)
    }

    @Test("a read that finds the log pruned past it, or more dropped tenants than the cache holds, empties the cache")
    func startsAgain() {
        var state = UsageConfigCache.State()
        let tenant = UUID()
        let first = state.apply(ConfigVersions.Log(catalog: 1, next: 100, incomplete: true), capacity: 2)
        state.tenants[tenant] = Self.config
        let pruned = state.apply(ConfigVersions.Log(catalog: 1, next: 200, incomplete: true), capacity: 2)
        #expect(state.tenants.isEmpty)
        #expect(!state.keeps(tenant, loadedAt: first))
        state.tenants[tenant] = Self.config
        let many = state.apply(ConfigVersions.Log(catalog: 1, changed: [UUID(), UUID(), UUID()], next: 300), capacity: 2)
        #expect(many == pruned + 1)
        #expect(state.tenants.isEmpty)
        #expect(!state.keeps(tenant, loadedAt: pruned))
    }
}
