import Testing
import UsageEvents

/// The suggestion for a field a request does not take (`ClosedRequestBody`).
@Suite("Unknown request fields: the field meant")
struct UnknownFieldTests {
    @Test(
        "misspellings and truncations find their field; a different word finds none",
        arguments: [
            ("at_period_ends", ["at", "at_period_end"], "at_period_end"),
            ("plna", ["plan", "at"], "plan"),
            ("Tenant_ID", ["tenant_id", "plan"], "tenant_id"),
            ("tax_rate", ["name", "billing_email", "tax_rate_bps", "payment_provider"], "tax_rate_bps"),
            ("threshold_percent", ["threshold_value", "threshold_percentage"], "threshold_percentage"),
            ("billing_emial", ["name", "billing_email"], "billing_email"),
            ("id", ["at", "plan"], nil),
            ("colour", ["name", "billing_email", "tax_rate_bps", "payment_provider"], nil),
            ("", ["at"], nil),
        ] as [(String, [String], String?)])
    func nearest(key: String, fields: [String], expected: String?) {
        #expect(UnknownField.nearest(key, in: fields) == expected)
    }

    @Test("edit distance: 300 random pairs against a plain recursive definition")
    func distance() {
        var generator = SystemRandomNumberGenerator()
        func reference(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Int {
            // Optimal string alignment, written as its definition (exponential; short words only).
            if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
            var best = min(
                reference(a.dropLast(), b) + 1, reference(a, b.dropLast()) + 1,
                reference(a.dropLast(), b.dropLast()) + (a.last == b.last ? 0 : 1))
            if a.count > 1, b.count > 1, a.last == b[b.endIndex - 2], a[a.endIndex - 2] == b.last {
                best = min(best, reference(a.dropLast(2), b.dropLast(2)) + 1)
            }
            return best
        }
        for _ in 0..<300 {
            let a = (0..<Int.random(in: 0...6, using: &generator)).map { _ in UInt8.random(in: 97...100, using: &generator) }
            let b = (0..<Int.random(in: 0...6, using: &generator)).map { _ in UInt8.random(in: 97...100, using: &generator) }
            #expect(UnknownField.distance(a, b) == reference(a[...], b[...]), "\(a) \(b)")
        }
    }
}
