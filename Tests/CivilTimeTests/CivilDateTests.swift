import CivilTime
import Foundation
import Testing

@Suite("Civil dates")
struct CivilDateTests {
    @Test("known dates convert both ways")
    func knownDates() {
        #expect(CivilDate(year: 1970, month: 1, day: 1).daysSinceEpoch == 0)
        #expect(CivilDate(year: 2000, month: 3, day: 1).daysSinceEpoch == 11_017)
        #expect(CivilDate(year: 1969, month: 12, day: 31).daysSinceEpoch == -1)
        #expect(CivilDate(daysSinceEpoch: 20_781) == CivilDate(year: 2026, month: 11, day: 24))
        #expect(CivilDate(year: 2028, month: 2, day: 29).isValid)
        #expect(!CivilDate(year: 2100, month: 2, day: 29).isValid)
        #expect(CivilDate(year: 2000, month: 2, day: 29).isValid)
    }

    @Test("days to date to days is the identity, and agrees with Foundation's Gregorian calendar")
    func roundTrip() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: "UTC"))
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            // Foundation switches to the Julian calendar before 1582; compare from 1600 on.
            let days = Int64.random(in: -135_000...200_000, using: &generator)
            let date = CivilDate(daysSinceEpoch: days)
            #expect(date.daysSinceEpoch == days, "days \(days)")
            let reference = calendar.dateComponents(
                [.year, .month, .day], from: Date(timeIntervalSince1970: Double(days) * 86_400))
            #expect([date.year, date.month, date.day] == [reference.year, reference.month, reference.day].map { Int64($0 ?? 0) }, "days \(days)")
        }
    }
}
