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
/// Never stale for a decision: every transaction, after taking its tenants' locks, reads
/// the catalog's counter (`catalog_version`, bumped by any change to metrics or plans) and
/// the log of the tenants whose subscriptions, plan changes or alerts changed, or that
/// were deleted, since the cache last read it (`config_changes`, migration 024), and drops
/// those tenants; a tenant it does not hold is looked up (it exists or not) and loaded. So
/// a batch of tenants the cache holds costs no lookup per tenant, whatever their number.
///
/// Several transactions read and load side by side. What one loaded is kept only if no
/// read applied since its own took out that tenant (a read applied later that saw a
/// change may have dropped the tenant before this older copy arrives: kept, it would
/// never be dropped again).
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

    struct Global: Sendable {
        let version: Int64
        let catalog: MetricCatalog
        let plans: PlanCatalog
    }

    struct TenantConfig: Sendable {
        /// The catalog's counter when loaded: subscriptions hold plan values.
        let catalogVersion: Int64
        let subscriptions: [StoredSubscription]
        let alerts: [StoredAlert]
    }

    struct State: Sendable {
        var global: Global?
        /// Tenants known to exist, with their configuration.
        var tenants: [UUID: TenantConfig] = [:]
        /// Where the next read of the log starts (nil: not read yet).
        var logNext: UInt64?
        /// Counts the reads that took tenants out; `invalidated` says at which one each
        /// tenant last went, `clearedAt` when all did.
        var generation = 0
        var invalidated: [UUID: Int] = [:]
        var clearedAt = 0
        /// Reads after the first that emptied the cache: the log pruned past where it last
        /// read (or truncated), or more tenants changed than it tracks.
        var restarts = 0
        /// Times the cache was emptied because it held `capacity` tenants.
        var overflows = 0

        /// Applies a read of the log; returns the generation after it.
        mutating func apply(_ log: ConfigVersions.Log, capacity: Int) -> Int {
            if log.incomplete || invalidated.count + log.changed.count > capacity {
                if logNext != nil { restarts += 1 }
                generation += 1
                tenants.removeAll(keepingCapacity: true)
                invalidated.removeAll(keepingCapacity: true)
                clearedAt = generation
            } else if !log.changed.isEmpty {
                generation += 1
                for tenant in log.changed {
                    tenants[tenant] = nil
                    invalidated[tenant] = generation
                }
            }
            logNext = max(logNext ?? 0, log.next)
            return generation
        }

        /// Whether a configuration loaded after the read of generation `loadedAt` may be kept.
        func keeps(_ tenant: UUID, loadedAt: Int) -> Bool {
            clearedAt <= loadedAt && (invalidated[tenant] ?? 0) <= loadedAt
        }
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
    /// Whether the schema has the change log, asked once (a schema changes only while the
    /// Aggregators are stopped).
    private let logAvailable = Mutex<Bool?>(nil)

    private func hasLog(on connection: isolated PostgresConnection) throws -> Bool {
        if let known = logAvailable.withLock({ $0 }) { return known }
        let available = try ConfigVersions.hasLog(on: connection)
        logAvailable.withLock { $0 = available }
        return available
    }

    /// Tenants kept at most; beyond it the cache starts again (a few hundred bytes each).
    let capacity: Int

    init(capacity: Int = 200_000) {
        self.capacity = capacity
    }

    /// Reloads since the start, for tests and metrics: (catalog loads, tenant loads).
    private let loads = Mutex((catalog: 0, tenants: 0))
    var loadCounts: (catalog: Int, tenants: Int) { loads.withLock { $0 } }

    /// Times the cache was emptied since the start, for tests and metrics.
    var emptied: (restarts: Int, overflows: Int) { state.withLock { ($0.restarts, $0.overflows) } }

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
        let log: ConfigVersions.Log
        if try hasLog(on: connection) {
            log = try ConfigVersions.log(since: state.withLock { $0.logNext }, on: connection)
        } else {
            // A schema without the log: every tenant of the batch is looked up and loaded.
            log = ConfigVersions.Log(catalog: try ConfigVersions.catalogVersion(on: connection), changed: Set(tenants))
        }
        let catalogVersion = log.catalog
        var subscriptions: [UUID: [StoredSubscription]] = [:]
        var alerts: [UUID: [StoredAlert]] = [:]
        var missing: [UUID] = []
        let (generation, cachedGlobal) = state.withLock { state in
            let generation = state.apply(log, capacity: capacity)
            for tenant in tenants {
                guard let config = state.tenants[tenant], config.catalogVersion == catalogVersion else {
                    missing.append(tenant)
                    continue
                }
                if !config.subscriptions.isEmpty { subscriptions[tenant] = config.subscriptions }
                if !config.alerts.isEmpty { alerts[tenant] = config.alerts }
            }
            return (generation, state.global)
        }
        var global = cachedGlobal
        if global?.version != catalogVersion {
            global = Global(
                version: catalogVersion, catalog: try MetricCatalogRecords.load(on: connection),
                plans: try SubscriptionRecords.plans(on: connection))
            loads.withLock { $0.catalog += 1 }
        }
        guard let global else { preconditionFailure("the catalog was just loaded") }
        var absent = Set<UUID>()
        var loaded: [(UUID, TenantConfig)] = []
        if !missing.isEmpty {
            // Those the cache does not hold: whether they exist, then their configuration.
            absent = try ConfigVersions.absent(of: missing, on: connection)
            let existing = missing.filter { !absent.contains($0) }
            let loadedSubscriptions = try SubscriptionRecords.subscriptions(of: existing, plans: global.plans, on: connection)
            let loadedAlerts = try StoredAlert.load(tenants: existing, on: connection)
            for tenant in existing {
                let config = TenantConfig(
                    catalogVersion: catalogVersion, subscriptions: loadedSubscriptions[tenant] ?? [], alerts: loadedAlerts[tenant] ?? [])
                if !config.subscriptions.isEmpty { subscriptions[tenant] = config.subscriptions }
                if !config.alerts.isEmpty { alerts[tenant] = config.alerts }
                loaded.append((tenant, config))
            }
            loads.withLock { $0.tenants += existing.count }
        }
        state.withLock { state in
            if state.global.map({ $0.version < catalogVersion }) ?? true { state.global = global }
            if state.tenants.count + loaded.count > capacity {
                state.tenants.removeAll(keepingCapacity: true)
                state.overflows += 1
            }
            for (tenant, config) in loaded where state.keeps(tenant, loadedAt: generation) { state.tenants[tenant] = config }
        }
        return Snapshot(catalog: global.catalog, plans: global.plans, subscriptions: subscriptions, alerts: alerts, absent: absent)
    }
}
