import CivilTime
import Foundation

/// A calendar day in UTC: the engine's only calendar arithmetic, on the proleptic
/// Gregorian calendar of `CivilDate` (integer arithmetic, as PostgreSQL counts days;
/// Foundation's `Calendar` took locks and most of the Aggregator's calendar time).
struct UTCDay: Hashable {
    let year: Int
    let month: Int
    let day: Int

    init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// The day `days` after 1970-01-01 (negative: before).
    init(daysSinceEpoch days: Int64) {
        let date = CivilDate(daysSinceEpoch: days)
        self.init(year: Int(date.year), month: Int(date.month), day: Int(date.day))
    }

    /// Days from 1970-01-01 to this day; nil when it does not exist (February 30th).
    var daysSinceEpoch: Int64? {
        let date = CivilDate(year: Int64(year), month: Int64(month), day: Int64(day))
        return date.isValid ? date.daysSinceEpoch : nil
    }

    /// 28 to 31.
    static func length(ofMonth month: Int, in year: Int) -> Int {
        Int(CivilDate.days(inMonth: Int64(month), year: Int64(year)))
    }
}
