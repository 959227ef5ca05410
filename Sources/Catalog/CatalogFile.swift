import Foundation
import TallyStore
import UsageEvents
import Yams

/// A catalog as an operator keeps it in git (`invoicer catalog apply FILE`): billable
/// metrics and plans, JSON or YAML, each entry as the API takes it —
///
/// ```yaml
/// metrics:
///   - {code: sms, name: Text messages, unit: message}
/// plans:
///   - code: growth
///     name: Growth
///     currency: usd
///     base_cents: 4900
///     charges:
///       - {metric: api_calls, model: graduated, tiers: [{up_to: 1000, unit_price: 0}, {up_to: null, unit_price: "0.25"}]}
/// ```
///
/// Read whole before anything is written: a refusal names the entry and field
/// (`plans[1].charges[0].tiers[2].up_to`). Numbers keep their written text.
public struct CatalogFile: Sendable {
    public let metrics: [MetricDefinition]
    public let plans: [PlanDefinition]

    /// Reads `text`, YAML (which JSON also is) or JSON.
    public init(text: String, yaml: Bool) throws(CatalogRefusal) {
        let root: JSONValue
        if yaml {
            root = try Self.json(yaml: text)
        } else {
            do {
                root = try JSONParser.parse(Array(text.utf8))
            } catch {
                throw CatalogRefusal(.invalid, field: "file", error.refusal)
            }
        }
        let file = try Fields(root, path: "")
        try file.refuseOthers(than: ["metrics", "plans"], of: "a catalog file")
        var metrics: [MetricDefinition] = []
        var metricCodes: [String: Int] = [:]
        for (index, item) in (try file.array("metrics") ?? []).enumerated() {
            let metric = try Self.prefixed("metrics[\(index)]") { () throws(CatalogRefusal) in try MetricDefinition(json: item) }
            // Twice, the second definition silently won (or both were "changed" in turn).
            if let first = metricCodes[metric.metric.code] {
                throw CatalogRefusal(
                    .invalid, field: "metrics[\(index)].code", "metric \(metric.metric.code) is defined twice (metrics[\(first)] too)")
            }
            metricCodes[metric.metric.code] = index
            metrics.append(metric)
        }
        var plans: [PlanDefinition] = []
        var codes: [String: Int] = [:]
        for (index, item) in (try file.array("plans") ?? []).enumerated() {
            let plan = try Self.prefixed("plans[\(index)]") { () throws(CatalogRefusal) in try PlanDefinition(json: item) }
            if let first = codes[plan.version.code] {
                throw CatalogRefusal(.invalid, field: "plans[\(index)].code", "plan \(plan.version.code) is defined twice (plans[\(first)] too)")
            }
            codes[plan.version.code] = index
            plans.append(plan)
        }
        // An empty file (or `metrics:` and `plans:` left empty) applied as "0 changes": most
        // likely the wrong file, which should not pass for a catalog in step with Tally's.
        guard !metrics.isEmpty || !plans.isEmpty else {
            throw CatalogRefusal(.invalid, field: "file", "holds no metrics and no plans: a catalog file lists them under `metrics:` and `plans:`")
        }
        self.metrics = metrics
        self.plans = plans
    }

    /// A refusal of an entry, its field named from the file's root.
    private static func prefixed<T>(_ prefix: String, _ body: () throws(CatalogRefusal) -> T) throws(CatalogRefusal) -> T {
        do {
            return try body()
        } catch {
            throw CatalogRefusal(error.kind, field: error.field == "body" ? prefix : "\(prefix).\(error.field)", error.message)
        }
    }

    /// A YAML document as JSON: numbers (YAML ints and floats) keep their text.
    static func json(yaml text: String) throws(CatalogRefusal) -> JSONValue {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw CatalogRefusal(.invalid, field: "file", "is not valid YAML: \(error)")
        }
        guard let node else { return .object([:]) }
        return try json(node, path: "file")
    }

    private static func json(_ node: Node, path: String) throws(CatalogRefusal) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return .bool(node.bool ?? false)
            case Tag.Name.int.rawValue, Tag.Name.float.rawValue:
                // A number as written; one JSON cannot read (`.5`, `0x1F`, `.inf`) stays text,
                // which the field's own check then judges.
                if let number = try? JSONParser.parse(Array(scalar.string.utf8)), case .number = number { return number }
                return .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for (index, item) in sequence.enumerated() { items.append(try json(item, path: "\(path)[\(index)]")) }
            return .array(items)
        case .mapping(let mapping):
            var members: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard case .scalar(let name) = key else { throw CatalogRefusal(.invalid, field: path, "has a key that is not text") }
                members[name.string] = try json(value, path: "\(path).\(name.string)")
            }
            return .object(members)
        case .alias:
            throw CatalogRefusal(.invalid, field: path, "uses a YAML alias; write the value out")
        }
    }
}

/// What applying a catalog did, entry by entry.
public struct CatalogChanges: Sendable, Equatable {
    public enum Action: String, Sendable {
        case created, changed, unchanged
    }

    public var metrics: [(code: String, action: Action)] = []
    /// A plan's action and the version it is at afterwards.
    public var plans: [(code: String, action: Action, version: Int)] = []

    public static func == (lhs: CatalogChanges, rhs: CatalogChanges) -> Bool {
        lhs.metrics.map { "\($0.code) \($0.action)" } == rhs.metrics.map { "\($0.code) \($0.action)" }
            && lhs.plans.map { "\($0.code) \($0.action) \($0.version)" } == rhs.plans.map { "\($0.code) \($0.action) \($0.version)" }
    }
}

extension CatalogFile {
    /// Writes what differs from the catalog in `store`: a new metric or a changed name or
    /// unit; a new plan (version 1), or a new version of a plan whose newest one defines
    /// other prices. An entry identical to what is stored is left as it is, so applying
    /// the same file again changes nothing. With `dryRun`, says what it would do.
    public func apply(to store: CatalogStore, dryRun: Bool = false) async throws -> CatalogChanges {
        var changes = CatalogChanges()
        let known = try await store.metricCodes().union(metrics.map(\.metric.code))
        // Everything that could be refused is checked before the first write: the metrics
        // each plan charges, an aggregation that can no longer change, an archived plan.
        for (index, plan) in plans.enumerated() {
            try Self.prefixed("plans[\(index)]") { () throws(CatalogRefusal) in try plan.requireMetrics(in: known) }
            if let stored = try await store.plan(plan.version.code), stored.archivedAt != nil,
                stored.versions.last.map({ !$0.definesSame(as: plan.version) }) ?? true
            {
                throw CatalogRefusal(
                    .conflict, field: "plans[\(index)].code", "plan \(plan.version.code) is archived; give the new prices a new code")
            }
        }
        for (index, definition) in metrics.enumerated() {
            do {
                try await store.checkAggregationChange(definition.metric)
            } catch let refusal as CatalogRefusal {
                throw CatalogRefusal(refusal.kind, field: "metrics[\(index)].\(refusal.field)", refusal.message)
            }
        }
        for definition in metrics {
            let stored = try await store.metric(definition.metric.code)
            if stored == definition.metric {
                changes.metrics.append((definition.metric.code, .unchanged))
                continue
            }
            if !dryRun { _ = try await store.put(definition.metric) }
            changes.metrics.append((definition.metric.code, stored == nil ? .created : .changed))
        }
        for definition in plans {
            let code = definition.version.code
            guard let stored = try await store.plan(code), let newest = stored.versions.last else {
                let version = dryRun ? 1 : try await store.create(definition.version).version
                changes.plans.append((code, .created, version))
                continue
            }
            if newest.definesSame(as: definition.version) {
                changes.plans.append((code, .unchanged, newest.version))
                continue
            }
            let version = dryRun ? newest.version + 1 : try await store.addVersion(definition.version).version
            changes.plans.append((code, .changed, version))
        }
        return changes
    }
}
