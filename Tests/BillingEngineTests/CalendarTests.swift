import BillingEngine
import TallyTestSupport
import Testing

@Suite("Billing periods from an anchor (SPEC §2 Periods)")
struct CalendarTests {
    func day(_ y: Int64, _ m: Int64, _ d: Int64, _ h: Int64 = 0) -> Instant { Instant(year: y, month: m, day: d, hour: h) }

    @Test("a Jan 31 anchor over a leap year: Feb 29, Mar 31, Apr 30, …, always from the anchor")
    func january31Leap() {
        let calendar = BillingCalendar(anchor: day(2028, 1, 31, 9), interval: .monthly)
        let starts = (0...13).map { calendar.boundary($0) }
        #expect(
            starts == [
                day(2028, 1, 31, 9), day(2028, 2, 29, 9), day(2028, 3, 31, 9), day(2028, 4, 30, 9), day(2028, 5, 31, 9),
                day(2028, 6, 30, 9), day(2028, 7, 31, 9), day(2028, 8, 31, 9), day(2028, 9, 30, 9), day(2028, 10, 31, 9),
                day(2028, 11, 30, 9), day(2028, 12, 31, 9), day(2029, 1, 31, 9), day(2029, 2, 28, 9),
            ])
        #expect(calendar.period(1) == Period(start: day(2028, 2, 29, 9), end: day(2028, 3, 31, 9)))
        #expect(BillingCalendar(anchor: day(2027, 1, 31), interval: .monthly).boundary(1) == day(2027, 2, 28))
    }

    @Test("a Feb 29 yearly anchor bills on Feb 28 in common years and Feb 29 in leap years")
    func february29Yearly() {
        let calendar = BillingCalendar(anchor: day(2028, 2, 29), interval: .yearly)
        #expect((0...4).map { calendar.boundary($0) } == [day(2028, 2, 29), day(2029, 2, 28), day(2030, 2, 28), day(2031, 2, 28), day(2032, 2, 29)])
        #expect(calendar.boundary(-1) == day(2027, 2, 28))
    }

    @Test("periods are half-open: the start belongs, the end belongs to the next")
    func halfOpen() {
        let calendar = BillingCalendar(anchor: day(2026, 11, 15), interval: .monthly)
        let november = calendar.period(0)
        #expect(november.contains(day(2026, 11, 15)))
        #expect(!november.contains(day(2026, 12, 15)))
        #expect(november.contains(day(2026, 12, 15).advanced(byMicroseconds: -1)))
        #expect(calendar.index(containing: day(2026, 12, 15)) == 1)
        #expect(calendar.index(containing: day(2026, 12, 15).advanced(byMicroseconds: -1)) == 0)
        #expect(calendar.index(containing: day(2026, 11, 14)) == -1)
    }

    @Test("the period containing an instant, checked against a walk from the anchor", arguments: [BillingInterval.monthly, .yearly])
    func containing(interval: BillingInterval) {
        var generator = SeededRandom(seed: 20_261_125)
        for _ in 0..<2_000 {
            let anchor = Instant(microsecondsSinceEpoch: Int64.random(in: 0...4_000_000_000_000_000, using: &generator))
            let calendar = BillingCalendar(anchor: anchor, interval: interval)
            let instant = Instant(
                microsecondsSinceEpoch: anchor.microsecondsSinceEpoch
                    + Int64.random(in: -400_000_000_000_000...400_000_000_000_000, using: &generator))
            let index = calendar.index(containing: instant)
            #expect(calendar.period(index).contains(instant), "anchor \(anchor) instant \(instant)")
            // Consecutive periods tile time: each ends where the next begins.
            #expect(calendar.period(index).end == calendar.period(index + 1).start)
        }
    }

    @Test(
        "instants print four-digit years, as RFC 3339 and PostgreSQL read them",
        arguments: [
            (Instant(year: 13, month: 1, day: 3), "0013-01-03T00:00:00Z"), (Instant(year: 1, month: 1, day: 1), "0001-01-01T00:00:00Z"),
            (Instant(year: 999, month: 12, day: 31, hour: 23), "0999-12-31T23:00:00Z"),
            (Instant(year: 2026, month: 11, day: 30), "2026-11-30T00:00:00Z"),
            (Instant(year: 9999, month: 12, day: 31), "9999-12-31T00:00:00Z"),
        ])
    func fourDigitYears(instant: Instant, text: String) {
        #expect(instant.description == text)
    }
}
