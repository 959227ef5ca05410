import BillingEngine
import Testing

/// Days, periods and numbers as finance reads them on an invoice (issue 11).
@Suite("Invoice text: days, periods, grouped numbers")
struct InvoiceTextTests {
    static func at(_ y: Int64, _ m: Int64, _ d: Int64, _ h: Int64 = 0, _ min: Int64 = 0, _ s: Int64 = 0) -> Instant {
        Instant(year: y, month: m, day: d, hour: h, minute: min, second: s)
    }

    @Test(
        "periods: the exclusive end as Stripe shows it, the year once when shared, times only off midnight, in UTC",
        arguments: [
            (at(2026, 10, 16), at(2026, 11, 16), "Oct 16 – Nov 16, 2026"),
            (at(2026, 12, 16), at(2027, 1, 16), "Dec 16, 2026 – Jan 16, 2027"),
            (at(2026, 1, 31), at(2026, 2, 28), "Jan 31 – Feb 28, 2026"),
            (at(2026, 1, 1), at(2027, 1, 1), "Jan 1, 2026 – Jan 1, 2027"),
            (at(2026, 11, 16, 19, 22), at(2026, 12, 16), "Nov 16, 2026 19:22 – Dec 16, 2026 UTC"),
            (at(2026, 11, 1), at(2026, 11, 11, 8, 5), "Nov 1, 2026 – Nov 11, 2026 08:05 UTC"),
            (at(2026, 12, 31, 23, 59, 30), at(2027, 1, 31, 0, 0, 1), "Dec 31, 2026 23:59:30 – Jan 31, 2027 00:00:01 UTC"),
        ])
    func periods(start: Instant, end: Instant, expected: String) {
        #expect(InvoiceText.period(Period(start: start, end: end)) == expected)
    }

    @Test("a day is its UTC date, whatever the time")
    func days() {
        #expect(InvoiceText.day(Self.at(2026, 12, 30)) == "Dec 30, 2026")
        #expect(InvoiceText.day(Self.at(2026, 12, 30, 23, 59, 59)) == "Dec 30, 2026")
        #expect(InvoiceText.day(Self.at(2000, 2, 29, 12)) == "Feb 29, 2000")
        #expect(InvoiceText.day(Instant(microsecondsSinceEpoch: -1)) == "Dec 31, 1969")
    }

    @Test(
        "thousands separators on the whole part only, signs and fractions kept",
        arguments: [
            ("0", "0"), ("999", "999"), ("1000", "1,000"), ("1207", "1,207"), ("1000.5", "1,000.5"), ("0.0003", "0.0003"),
            ("24091556", "24,091,556"), ("-30", "-30"), ("-1234567.8901", "-1,234,567.8901"), ("1000000000000", "1,000,000,000,000"),
        ])
    func grouped(text: String, expected: String) throws {
        #expect(InvoiceText.grouped(text) == expected)
        if !text.hasPrefix("-") { #expect(try Quantity(parsing: text).groupedDescription == expected) }
    }
}
