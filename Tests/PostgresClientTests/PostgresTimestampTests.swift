import Foundation
import PostgresClient
import Testing

/// The text form of `timestamptz` parameters, checked without a server against a
/// reference written here with Foundation's calendar and `String(format:)`.
@Suite("PostgreSQL timestamps as text")
struct PostgresTimestampTests {
    private static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// The reference: ISO 8601 in UTC with six fractional digits.
    private func reference(_ micros: Int64) -> String {
        let seconds = Int64((Double(micros) / 1_000_000).rounded(.down))
        let fraction = micros - seconds * 1_000_000
        let parts = Self.calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(seconds)))
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!,
            parts.second!, fraction)
    }

    @Test("random instants from 1600 to 9999 are written as the reference writes them")
    func randomInstants() {
        var generator = SystemRandomNumberGenerator()
        // 1600-01-01 … 9999-12-31, where Foundation's calendar is proleptic Gregorian too.
        let range: ClosedRange<Int64> = -11_676_096_000_000_000...253_402_300_799_999_999
        for _ in 0..<20_000 {
            let micros = Int64.random(in: range, using: &generator)
            #expect(PostgresTimestamp(microsecondsSinceEpoch: micros).description == reference(micros), "\(micros)")
        }
    }

    @Test("edges: the epoch, a microsecond before it, a leap day, the last microsecond of a year")
    func edges() {
        #expect(PostgresTimestamp(microsecondsSinceEpoch: 0).description == "1970-01-01T00:00:00.000000Z")
        #expect(PostgresTimestamp(microsecondsSinceEpoch: -1).description == "1969-12-31T23:59:59.999999Z")
        #expect(PostgresTimestamp(microsecondsSinceEpoch: 1_835_395_200_000_001).description == "2028-02-29T00:00:00.000001Z")
        #expect(PostgresTimestamp(microsecondsSinceEpoch: 1_830_297_599_999_999).description == "2027-12-31T23:59:59.999999Z")
    }
}
