/// The one rule for a metric's name (SPEC §3): `[a-z][a-z0-9_]{0,99}`, checked byte by byte.
public enum MetricName {
    public static let rule = "must match [a-z][a-z0-9_]{0,99}"

    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return (1...100).contains(bytes.count) && (0x61...0x7A).contains(bytes[0])
            && bytes.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }
    }
}
