import BillingEngine
import Foundation
import TallyStore
import UsageEvents

/// A plan version as an operator writes it (the API's body, an entry of a catalog file),
/// read exactly — decimals from their JSON text — and checked against SPEC §2.1: every
/// refusal names the field path at fault (`charges[1].tiers[2].up_to`).
public struct PlanDefinition: Sendable, Equatable {
    public let version: StoredPlanVersion

    /// Reads `json`, an object; `code` is the path's when the body does not carry it.
    public init(json: JSONValue, code path: String? = nil) throws(CatalogRefusal) {
        let body = try Fields(json, path: "")
        try body.refuseOthers(than: ["code", "name", "currency", "interval", "base_cents", "trial_days", "charges"], of: "a plan")
        var code = path ?? ""
        if path == nil { code = try body.string("code", required: true)! }
        if let path, let named = try body.string("code"), named != path {
            throw CatalogRefusal(.invalid, field: "code", "is \(named), but the path names plan \(path); leave it out or make it match")
        }
        guard Self.isCode(code, maxLength: 64, allowingDash: true) else {
            throw CatalogRefusal(
                .invalid, field: "code", "must be 1 to 64 lower-case letters, digits, '_' or '-', starting with a letter")
        }
        let name = try body.string("name", required: true)!
        guard (1...200).contains(name.unicodeScalars.count) else { throw CatalogRefusal(.invalid, field: "name", "must be 1 to 200 characters") }
        let currencyCode = try body.string("currency", required: true)!
        guard let currency = Currency(code: currencyCode) else {
            throw CatalogRefusal(.invalid, field: "currency", "is not an ISO 4217 currency code (usd, eur, gbp, jpy, …)")
        }
        let interval = try body.string("interval") ?? "month"
        guard ["month", "year"].contains(interval) else { throw CatalogRefusal(.invalid, field: "interval", "must be month or year") }
        let baseCents = try body.integer("base_cents", in: 0...1_000_000_000_000, required: true)!
        let trialDays = try body.integer("trial_days", in: 0...730) ?? 0
        var charges: [StoredCharge] = []
        var seen: [String: Int] = [:]
        for (index, item) in (try body.array("charges") ?? []).enumerated() {
            let charge = try Self.charge(try Fields(item, path: "charges[\(index)]"))
            if let first = seen[charge.metric] {
                throw CatalogRefusal(.invalid, field: "charges[\(index)].metric", "charges \(charge.metric) again (charges[\(first)] does)")
            }
            seen[charge.metric] = index
            charges.append(charge)
        }
        version = StoredPlanVersion(
            code: code, version: 0, name: name, currency: currency.code, interval: interval, baseCents: Int64(baseCents),
            trialDays: trialDays, charges: charges)
        positions = seen
    }

    /// Where each metric's charge was in the body (for errors found later).
    private let positions: [String: Int]

    /// Refuses a charge of a metric the catalog does not define.
    public func requireMetrics(in known: Set<String>) throws(CatalogRefusal) {
        for charge in version.charges where !known.contains(charge.metric) {
            throw CatalogRefusal(
                .invalid, field: "charges[\(positions[charge.metric] ?? 0)].metric",
                "is not a billable metric; define it first with POST /v1/metrics")
        }
    }

    public static func == (lhs: PlanDefinition, rhs: PlanDefinition) -> Bool { lhs.version == rhs.version }

    static func isCode(_ text: String, maxLength: Int, allowingDash: Bool) -> Bool {
        guard let first = text.unicodeScalars.first, ("a"..."z").contains(first), text.unicodeScalars.count <= maxLength else { return false }
        return text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || (allowingDash && $0 == "-") }
    }

    private static func charge(_ fields: Fields) throws(CatalogRefusal) -> StoredCharge {
        let metric = try fields.string("metric", required: true)!
        guard isCode(metric, maxLength: 100, allowingDash: false) else {
            throw fields.refusal("metric", "must be a metric code: lower-case letters, digits and '_', starting with a letter")
        }
        let enforcement = try fields.string("enforcement") ?? "soft"
        guard ["soft", "hard"].contains(enforcement) else { throw fields.refusal("enforcement", "must be soft or hard") }
        let quota = try fields.quantity("quota")
        if enforcement == "hard", quota == nil { throw fields.refusal("quota", "is required when enforcement is hard") }
        let model = try fields.string("model", required: true)!
        let common = ["metric", "enforcement", "quota", "model"]
        let own: [String: [String]] = [
            "standard": ["included", "unit_price"], "graduated": ["tiers"], "volume": ["tiers"],
            "package": ["included", "size", "price_cents"],
        ]
        if let own = own[model] { try fields.refuseOthers(than: common + own, of: "a \(model) charge") }
        var charge = StoredCharge(metric: metric, enforcement: enforcement, quota: quota?.description, model: model)
        switch model {
        case "standard":
            charge.included = (try fields.quantity("included") ?? .zero).description
            charge.unitPrice = try fields.price("unit_price", required: true)!.description
        case "graduated", "volume":
            charge.tiers = try tiers(fields)
        case "package":
            charge.included = (try fields.quantity("included") ?? .zero).description
            let size = try fields.quantity("size", required: true)!
            guard size > .zero else { throw fields.refusal("size", "must be greater than 0") }
            charge.size = size.description
            charge.priceCents = Int64(try fields.integer("price_cents", in: 0...1_000_000_000_000, required: true)!)
        default:
            throw fields.refusal("model", "must be standard, graduated, volume or package")
        }
        return charge
    }

    /// A tier table: bounds strictly increasing from 0 with no gap, the last one open.
    private static func tiers(_ fields: Fields) throws(CatalogRefusal) -> [StoredCharge.Tier] {
        let items = try fields.array("tiers", required: true)!
        guard (1...50).contains(items.count) else { throw fields.refusal("tiers", "must list 1 to 50 tiers") }
        var tiers: [StoredCharge.Tier] = []
        var previous = Quantity.zero
        for (index, item) in items.enumerated() {
            let tier = try Fields(item, path: "\(fields.path).tiers[\(index)]")
            try tier.refuseOthers(than: ["from", "up_to", "unit_price", "flat_cents"], of: "a tier")
            let last = index == items.count - 1
            let before = index == 0 ? "0" : "tiers[\(index - 1)].up_to (\(previous))"
            if let from = try tier.quantity("from") {
                if from > previous { throw tier.refusal("from", "leaves a gap after \(before); a tier starts where the one before ends") }
                if from < previous { throw tier.refusal("from", "overlaps the tier before, which ends at \(before)") }
            }
            let upTo = try tier.quantity("up_to")
            switch (upTo, last) {
            case (nil, false):
                throw tier.refusal("up_to", "only the last tier is open (null); this one must say where it ends")
            case (.some, true):
                throw tier.refusal("up_to", "must be null: the last tier is open, so every value is priced")
            case (.some(let bound), false) where bound <= previous:
                throw tier.refusal("up_to", "must be greater than \(before): bounds increase")
            default:
                break
            }
            let price = try tier.price("unit_price", required: true)!
            let flat = try tier.integer("flat_cents", in: 0...1_000_000_000_000) ?? 0
            tiers.append(StoredCharge.Tier(upTo: upTo?.description, unitPrice: price.description, flatCents: Int64(flat)))
            previous = upTo ?? previous
        }
        return tiers
    }
}

/// A billable metric as an operator writes it (`POST /v1/metrics`, a catalog file).
public struct MetricDefinition: Sendable, Equatable {
    public let metric: StoredMetric

    public init(json: JSONValue) throws(CatalogRefusal) {
        let body = try Fields(json, path: "")
        try body.refuseOthers(than: ["code", "name", "unit", "aggregation", "field"], of: "a metric")
        let code = try body.string("code", required: true)!
        guard PlanDefinition.isCode(code, maxLength: 100, allowingDash: false) else {
            throw CatalogRefusal(.invalid, field: "code", "must be 1 to 100 lower-case letters, digits or '_', starting with a letter")
        }
        let name = try body.string("name") ?? code
        guard (1...200).contains(name.unicodeScalars.count) else { throw CatalogRefusal(.invalid, field: "name", "must be 1 to 200 characters") }
        let unit = try body.string("unit")
        if let unit, !(1...50).contains(unit.unicodeScalars.count) { throw CatalogRefusal(.invalid, field: "unit", "must be 1 to 50 characters") }
        let aggregation = try body.string("aggregation") ?? "sum"
        guard ["sum", "count", "max", "latest", "unique_count"].contains(aggregation) else {
            throw CatalogRefusal(.invalid, field: "aggregation", "must be sum, count, max, latest or unique_count")
        }
        let field = try body.string("field")
        if aggregation == "unique_count", field?.isEmpty ?? true {
            throw CatalogRefusal(.invalid, field: "field", "names the metadata field unique_count counts; it is required")
        }
        if aggregation != "unique_count", field != nil {
            throw CatalogRefusal(.invalid, field: "field", "is only for unique_count")
        }
        metric = StoredMetric(code: code, name: name, unit: unit, aggregation: aggregation, field: field)
    }
}

/// An object's members, read with their path for errors.
struct Fields {
    let members: [String: JSONValue]
    let path: String

    init(_ value: JSONValue, path: String) throws(CatalogRefusal) {
        guard case .object(let members) = value else {
            throw CatalogRefusal(.invalid, field: path.isEmpty ? "body" : path, "must be a JSON object")
        }
        self.members = members
        self.path = path
    }

    func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func refusal(_ key: String, _ message: String) -> CatalogRefusal { CatalogRefusal(.invalid, field: field(key), message) }

    /// Refuses the first member (by name) that is not one of `allowed`: a misspelt key
    /// (`"inclued": 1000`, `"aggregaton": "max"`) is a refusal naming it and the field it
    /// resembles, not a default silently taken in its place.
    func refuseOthers(than allowed: [String], of what: String) throws(CatalogRefusal) {
        guard let other = Set(members.keys).subtracting(allowed).sorted().first else { return }
        throw CatalogRefusal(.invalid, field: field(UnknownField.echoed(other)), UnknownField.refusal(other, fields: allowed, of: what))
    }

    /// The member, nil when absent or null (refused when `required`).
    private func value(_ key: String, required: Bool) throws(CatalogRefusal) -> JSONValue? {
        switch members[key] {
        case nil, .null?:
            if required { throw refusal(key, "is required") }
            return nil
        case let value?:
            return value
        }
    }

    func string(_ key: String, required: Bool = false) throws(CatalogRefusal) -> String? {
        guard let value = try value(key, required: required) else { return nil }
        guard case .string(let text) = value else { throw refusal(key, "must be a string") }
        guard !text.unicodeScalars.contains("\0") else { throw refusal(key, "must not contain a NUL character") }
        return text
    }

    func array(_ key: String, required: Bool = false) throws(CatalogRefusal) -> [JSONValue]? {
        guard let value = try value(key, required: required) else { return nil }
        guard case .array(let items) = value else { throw refusal(key, "must be an array") }
        return items
    }

    func integer(_ key: String, in range: ClosedRange<Int>, required: Bool = false) throws(CatalogRefusal) -> Int? {
        guard let value = try value(key, required: required) else { return nil }
        guard case .number(let number) = value, let integer = Int(number.text), range.contains(integer) else {
            throw refusal(key, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return integer
    }

    /// A decimal written as a JSON number or a string, exactly.
    private func decimalText(_ key: String, required: Bool) throws(CatalogRefusal) -> String? {
        guard let value = try value(key, required: required) else { return nil }
        switch value {
        case .number(let number): return number.text
        case .string(let text): return text
        default: throw refusal(key, "must be a decimal number (a JSON number or a string)")
        }
    }

    /// A usage amount: at least 0, at most 4 decimals.
    func quantity(_ key: String, required: Bool = false) throws(CatalogRefusal) -> Quantity? {
        guard let text = try decimalText(key, required: required) else { return nil }
        do {
            return try Quantity(parsing: text)
        } catch {
            throw refusal(key, "\(error)")
        }
    }

    /// Cents per unit: at least 0, at most 6 decimals of a cent.
    func price(_ key: String, required: Bool = false) throws(CatalogRefusal) -> UnitPrice? {
        guard let text = try decimalText(key, required: required) else { return nil }
        let price: UnitPrice
        do {
            price = try UnitPrice(parsing: text)
        } catch {
            throw refusal(key, "\(error)")
        }
        guard price >= .zero else { throw refusal(key, "must not be negative") }
        return price
    }
}
