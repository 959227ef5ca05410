import CivilTime
import Foundation
import PostgresClient
import Testing

/// The text forms of parameters written by hand for speed — timestamps, uuids — checked
/// without a server against references written here with Foundation.
@Suite("PostgreSQL parameters as text")
struct PostgresTextTests {
    private static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// The reference: ISO 8601 in UTC with six fractional digits.
    private func reference(_ micros: Int64) -> String {
        // Integer floor division: through a Double, micros near year 9999 round up a second.
        let seconds = micros >= 0 ? micros / 1_000_000 : -((-micros + 999_999) / 1_000_000)
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

    @Test("uuids: lower-case text and order as Foundation's upper-case text has them")
    func uuids() {
        let ids =
            (0..<2_000).map { _ in UUID() } + [UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))]
            + [UUID(uuid: (255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255))]
        for id in ids {
            #expect(id.lowercasedText == id.uuidString.lowercased())
            #expect(UUID(text: id.uuidString) == id && UUID(text: id.lowercasedText) == id)
        }
        // What Foundation refuses, refused alike (and what it accepts, accepted).
        let texts = [
            "", "00000000-0000-0000-0000-00000000000", "00000000-0000-0000-0000-0000000000000", "00000000x0000-0000-0000-000000000000",
            "0000000-00000-0000-0000-000000000000", "g0000000-0000-0000-0000-000000000000",
            "0000000000000000000000000000000000000", "{00000000-0000-0000-0000-000000000000}", "aBcDeF01-2345-6789-AbCd-Ef0123456789",
            "00000000-0000-0000-0000-000000000000\n", "é0000000-0000-0000-0000-000000000000",
        ]
        for text in texts {
            #expect(UUID(text: text) == UUID(uuidString: text), "\(text)")
        }
        // Foundation parses with sscanf, which lets a group start with spaces; a tenant id
        // with a space in it is not a uuid.
        #expect(UUID(text: " 0000000-0000-0000-0000-000000000000") == nil)
        for (a, b) in zip(ids, ids.shuffled()) {
            #expect(a.precedes(b) == (a.uuidString < b.uuidString), "\(a) \(b)")
            #expect(!a.precedes(a))
        }
    }
}
