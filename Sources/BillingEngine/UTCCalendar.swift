import Foundation

/// A calendar day in UTC: the engine's only calendar arithmetic, on Foundation's
/// Gregorian calendar fixed to UTC (the engine depends on nothing else).
struct UTCDay: Hashable {
    let year: Int
    let month: Int
    let day: Int

    private static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// The day `days` after 1970-01-01 (negative: before).
    init(daysSinceEpoch days: Int64) {
        // Whole days are exact in a Double, so no rounding touches the date.
        let parts = Self.calendar.dateComponents([.year, .month, .day], from: Date(timeIntervalSince1970: Double(days) * 86_400))
        self.init(year: parts.year!, month: parts.month!, day: parts.day!)
    }

    /// Days from 1970-01-01 to this day; nil when it does not exist (February 30th).
    var daysSinceEpoch: Int64? {
        guard (1...12).contains(month), (1...Self.length(ofMonth: month, in: year)).contains(day),
            let date = Self.calendar.date(from: DateComponents(year: year, month: month, day: day))
        else { return nil }
        return Int64((date.timeIntervalSince1970 / 86_400).rounded(.down))
    }

    /// 28 to 31.
    static func length(ofMonth month: Int, in year: Int) -> Int {
        let first = calendar.date(from: DateComponents(year: year, month: month, day: 1))!
        return calendar.range(of: .day, in: .month, for: first)!.count
    }
}

extension Int64 {
    /// Division rounding toward negative infinity, as calendar arithmetic needs.
    func dividedRoundingDown(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
