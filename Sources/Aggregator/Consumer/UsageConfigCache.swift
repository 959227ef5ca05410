import BillingEngine
import CivilTime
import Foundation
import PostgresClient
import Synchronization
import TallyStore

/// What quota and alert evaluation reads besides usage — the metric catalog, the plans,
/// and each tenant's subscriptions and alerts — kept between batches and shared by the
/// consumers of one Aggregator.
///
/// Never stale for a decision: every transaction reads the change counters of migration
/// 017 (`catalog_version`, bumped by any change to metrics or plans, and
/// `tenant_config_versions`, bumped by any change to a tenant's subscriptions, plan
/// changes or alerts) after taking its tenants' locks, and reloads what moved. Data loaded
/// after the counter was read is at least as new as the counter says; if it is newer,
/// the next batch sees a counter it does not hold and loads again.
final class UsageConfigCache: Sendable {
    /// The configuration a transaction evaluates with.
    struct Snapshot: Sendable {
        let catalog: MetricCatalog
        let plans: PlanCatalog
        let subscriptions: [UUID: [StoredSubscription]]
        let alerts: [UUID: [StoredAlert]]
        /// The tenants asked about that do not exist (as committed when the counters were read).
        var absent: Set<UUID> = []
    }

    private struct Global: Sendable {
        let version: Int64
        let catalog: MetricCatalog
        let plans: PlanCatalog
    }

    private struct TenantConfig: Sendable {
        /// The tenant's counter, and the catalog's: subscriptions hold plan values.
        let version: Int64
        let catalogVersion: Int64
        let subscriptions: [StoredSubscription]
        let alerts: [StoredAlert]
    }

    private struct State: Sendable {
        var global: Global?
        var tenants: [UUID: TenantConfig] = [:]
    }

    private let state = Mutex(State())
    /// Periods known complete (`UsagePeriodTotals`): a completed period is never taken
    /// back except by a rollback, and only committed completions are remembered.
    private let complete = Mutex(Set<TenantPeriod>())

    /// Those of `periods` not known complete.
    func notKnownComplete(_ periods: Set<TenantPeriod>) -> Set<TenantPeriod> {
        // Filtered, not `subtracting`: that walks the whole known set (200,000 periods at
        // most, 6 ms) to take out a batch's few thousand.
        complete.withLock { known in periods.filter { !known.contains($0) } }
    }

    /// Remembers committed completions.
    func rememberComplete(_ periods: Set<TenantPeriod>) {
        guard !periods.isEmpty else { return }
        complete.withLock { known in
            if known.count + periods.count > capacity { known.removeAll(keepingCapacity: true) }
            known.formUnion(periods)
        }
    }
    /// Tenants kept at most; beyond it the cache starts again (a few hundred bytes each).
    let capacity: Int

    init(capacity: Int = 200_000) {
        self.capacity = capacity
    }

    /// Reloads since the start, for tests and metrics: (catalog loads, tenant loads).
    private let loads = Mutex((catalog: 0, tenants: 0))
    var loadCounts: (catalog: Int, tenants: Int) { loads.withLock { $0 } }

    /// What the cache holds of `tenants`, without asking the database (possibly stale):
    /// their subscriptions, and the tenants it holds nothing of.
    func peek(_ tenants: [UUID]) -> (config: Snapshot, unknown: Set<UUID>) {
        state.withLock { state in
            var subscriptions: [UUID: [StoredSubscription]] = [:]
            var unknown = Set<UUID>()
            for tenant in tenants {
                guard let config = state.tenants[tenant], state.global != nil else {
                    unknown.insert(tenant)
                    continue
                }
                if !config.subscriptions.isEmpty { subscriptions[tenant] = config.subscriptions }
            }
            let snapshot = Snapshot(
                catalog: state.global?.catalog ?? MetricCatalog([:]), plans: state.global?.plans ?? PlanCatalog([]), subscriptions: subscriptions,
                alerts: [:])
            return (snapshot, unknown)
        }
    }

    /// The configuration of `tenants` as committed now. Call it after taking the tenants'
    /// locks, inside the transaction that decides with it.
    func snapshot(for tenants: [UUID], on connection: isolated PostgresConnection) throws -> Snapshot {
        // Only the counters that differ from the cache's come back; a tenant the cache
        // does not hold always comes back.
        let (cachedGlobal, cachedTenants) = state.withLock { state in
            (state.global, tenants.compactMap { tenant in state.tenants[tenant].map { (tenant, $0) } })
        }
        let held = Dictionary(uniqueKeysWithValues: cachedTenants.map { ($0.0, $0.1.version) })
        let changes = try ConfigVersions.changes(of: tenants, held: held, on: connection)
        let catalogVersion = changes.catalog
        let versions = held.merging(changes.tenants) { $1 }

        var global = cachedGlobal
        if global?.version != catalogVersion {
            global = Global(
                version: catalogVersion, catalog: try MetricCatalogRecords.load(on: connection),
                plans: try SubscriptionRecords.plans(on: connection))
            loads.withLock { $0.catalog += 1 }
        }
        guard let global else { preconditionFailure("the catalog was just loaded") }
        var configs = Dictionary(uniqueKeysWithValues: cachedTenants)
        let stale = tenants.filter { tenant in
            guard let config = configs[tenant] else { return true }
            return config.version != versions[tenant] ?? 0 || config.catalogVersion != catalogVersion
        }
        if !stale.isEmpty {
            let subscriptions = try SubscriptionRecords.subscriptions(of: stale, plans: global.plans, on: connection)
            let alerts = try StoredAlert.load(tenants: stale, on: connection)
            for tenant in stale {
                configs[tenant] = TenantConfig(
                    version: versions[tenant] ?? 0, catalogVersion: catalogVersion, subscriptions: subscriptions[tenant] ?? [],
                    alerts: alerts[tenant] ?? [])
            }
            loads.withLock { $0.tenants += stale.count }
        }
        let fresh = stale.compactMap { tenant in configs[tenant].map { (tenant, $0) } }
        state.withLock { state in
            if state.global.map({ $0.version < catalogVersion }) ?? true { state.global = global }
            if state.tenants.count + fresh.count > capacity { state.tenants.removeAll(keepingCapacity: true) }
            for (tenant, config) in fresh { state.tenants[tenant] = config }
        }
        return Snapshot(
            catalog: global.catalog, plans: global.plans,
            subscriptions: configs.compactMapValues { $0.subscriptions.isEmpty ? nil : $0.subscriptions },
            alerts: configs.compactMapValues { $0.alerts.isEmpty ? nil : $0.alerts }, absent: changes.absent)
    }
}
