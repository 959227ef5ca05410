/// A key a JSON object or a query does not take: the message that names it, with the field
/// it most likely misspells (the Billing API's request bodies and query parameters, the
/// catalog's plan and metric definitions).
public enum UnknownField {
    /// `is not a field of <what> (did you mean …?); its fields are …`.
    public static func refusal(_ key: String, fields: [String], of what: String, noun: String = "field") -> String {
        let near = nearest(key, in: fields)
        let list = fields.isEmpty ? "it takes none" : "its \(noun)s are \(fields.joined(separator: ", "))"
        return "is not a \(noun) of \(what)\(near.map { " (did you mean \($0)?)" } ?? ""); \(list)"
    }

    /// The key as sent, cut to 100 characters: it is echoed back in an error.
    public static func echoed(_ key: String) -> String {
        key.count > 100 ? String(key.prefix(100)) + "…" : key
    }

    /// The field `key` most likely misspells: the nearest of those one edit away per three
    /// characters (an edit: a letter added, dropped, changed, or two swapped; `plna` →
    /// `plan`, `at_period_ends` → `at_period_end`, but not `id` → `at`), or of which one
    /// starts the other and is at least two thirds of it (`tax_rate` → `tax_rate_bps`, not
    /// `at_period_ends` → `at`); ignoring case; nil when none is.
    public static func nearest(_ key: String, in fields: [String]) -> String? {
        let a = Array(key.lowercased().utf8)
        var best: (field: String, distance: Int)?
        for field in fields {
            let b = Array(field.lowercased().utf8)
            let (short, long) = a.count <= b.count ? (a, b) : (b, a)
            let d = distance(a, b)
            let truncated = long.starts(with: short) && short.count * 3 >= long.count * 2
            guard d * 3 <= long.count || truncated, d < (best?.distance ?? .max) else { continue }
            best = (field, d)
        }
        return best?.field
    }

    /// Edits from `a` to `b` (optimal string alignment: insertions, deletions, changes and
    /// swaps of neighbours).
    public static func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var twoBack: [Int] = []
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { current[j] = min(current[j], twoBack[j - 2] + 1) }
            }
            (twoBack, previous) = (previous, current)
        }
        return previous[b.count]
    }
}
