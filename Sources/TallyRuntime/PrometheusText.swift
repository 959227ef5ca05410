import TallyStore

/// Prometheus' text exposition format (0.0.4), written one metric family at a time:
/// `# HELP`, `# TYPE`, then its samples. Every process's `/metrics` is written with it.
public struct PrometheusText: Sendable {
    public private(set) var text = ""

    public init() {}

    public static let contentType = "text/plain; version=0.0.4"

    /// One family of `type` (counter, gauge) with one unlabelled sample.
    public mutating func metric(_ name: String, _ type: String, _ help: String, _ value: Int) {
        family(name, type, help, [([], "\(value)")])
    }

    /// The same, for a measured value (seconds, a rate).
    public mutating func metric(_ name: String, _ type: String, _ help: String, _ value: Double) {
        family(name, type, help, [([], Self.number(value))])
    }

    /// One family whose samples differ in their labels (`[(label, value)]` each).
    public mutating func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: String)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for sample in samples {
            text += name + Self.labels(sample.labels) + " " + sample.value + "\n"
        }
    }

    /// A histogram family: per label set, cumulative counts at each upper bound, the sum and the count.
    public mutating func histogram(_ name: String, _ help: String, bounds: [Double], _ series: [(labels: [(String, String)], histogram: Histogram)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (labels, histogram) in series {
            var cumulative = 0
            for (index, bound) in bounds.enumerated() {
                cumulative += histogram.buckets[index]
                text += "\(name)_bucket" + Self.labels(labels + [("le", Self.number(bound))]) + " \(cumulative)\n"
            }
            text += "\(name)_bucket" + Self.labels(labels + [("le", "+Inf")]) + " \(histogram.count)\n"
            text += "\(name)_sum" + Self.labels(labels) + " \(Self.number(histogram.sum))\n"
            text += "\(name)_count" + Self.labels(labels) + " \(histogram.count)\n"
        }
    }

    /// Observations counted into fixed upper bounds (the last bucket is implicit: +Inf).
    public struct Histogram: Sendable {
        public private(set) var buckets: [Int]
        public private(set) var sum = 0.0
        public private(set) var count = 0
        let bounds: [Double]

        public init(bounds: [Double]) {
            self.bounds = bounds
            self.buckets = Array(repeating: 0, count: bounds.count)
        }

        public mutating func observe(_ value: Double) {
            if let index = bounds.firstIndex(where: { value <= $0 }) { buckets[index] += 1 }
            sum += value
            count += 1
        }
    }

    static func labels(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// A label value with `\`, `"` and newlines escaped, as the format requires.
    static func escape(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    public static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

extension PrometheusText {
    /// The 401s of an `APIKeyAuthenticator`, by reason, and its database lookups.
    public mutating func authentication(_ counts: AuthenticationCounts) {
        family(
            "tally_http_unauthorized_total", "counter", "Requests answered 401, by reason",
            [
                ([("reason", "missing_token")], "\(counts.missingToken)"), ([("reason", "malformed_token")], "\(counts.malformedToken)"),
                ([("reason", "unknown_key")], "\(counts.unknownKey)"),
            ])
        metric("tally_http_api_key_lookups_total", "counter", "API keys looked up in the database (cache misses)", counts.lookups)
    }
}
