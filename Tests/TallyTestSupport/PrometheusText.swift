/// Samples of a Prometheus text exposition (`/metrics`), as series (name with its
/// labels, as written) → value.
public enum PrometheusText {
    public static func parse(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        return values
    }
}
