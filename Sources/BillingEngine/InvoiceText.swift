/// How invoices write days, periods and numbers for people (line descriptions, the
/// PDF): always UTC, English month abbreviations written here, no locale, so every
/// process and every test prints the same text.
///
/// Periods are shown as Stripe shows them: the end is the exclusive instant of the
/// half-open `[start, end)`, so a monthly period reads `Oct 16 – Nov 16, 2026` and the
/// next one starts where it ended. A bound at midnight UTC is a date; a bound at any
/// other time adds `HH:mm` (and `:ss` when the seconds are not zero; fractions of a
/// second are left out, the JSON API keeps the exact instant), and then both bounds
/// carry their year and the text ends in ` UTC`. A period of whole days within one
/// year names the year once, at the end.
public enum InvoiceText {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// A day as `Dec 30, 2026` (UTC; the time of day is not shown).
    public static func day(_ instant: Instant) -> String {
        let date = instant.civil.date
        return "\(monthDay(date)), \(date.year)"
    }

    /// A half-open period as finance reads it: `Oct 16 – Nov 16, 2026`,
    /// `Dec 16, 2026 – Jan 16, 2027`, `Nov 16, 2026 19:22 – Dec 16, 2026 UTC` (see the
    /// type's rule).
    public static func period(_ period: Period) -> String {
        let (start, startTime) = period.start.civil
        let (end, endTime) = period.end.civil
        guard startTime == 0, endTime == 0 else {
            return "\(bound(start, startTime)) – \(bound(end, endTime)) UTC"
        }
        guard start.year == end.year else { return "\(day(period.start)) – \(day(period.end))" }
        return "\(monthDay(start)) – \(monthDay(end)), \(end.year)"
    }

    /// Plain decimal text with thousands separators in the whole part: `1207` →
    /// `1,207`, `-24091556.5` → `-24,091,556.5`. Works on the digits, so exact
    /// quantities and cents never pass through a floating-point number.
    public static func grouped(_ decimal: String) -> String {
        let negative = decimal.hasPrefix("-")
        let unsigned = negative ? decimal.dropFirst() : Substring(decimal)
        let parts = unsigned.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts.first ?? ""
        var text = ""
        for (index, digit) in whole.enumerated() {
            if index > 0, (whole.count - index) % 3 == 0 { text.append(",") }
            text.append(digit)
        }
        if parts.count > 1 { text += "." + parts[1] }
        return (negative ? "-" : "") + text
    }

    private static func monthDay(_ date: UTCDay) -> String { "\(months[date.month - 1]) \(date.day)" }

    /// `Nov 16, 2026 19:22` (or without the time at midnight).
    private static func bound(_ date: UTCDay, _ microsecondOfDay: Int64) -> String {
        let text = "\(monthDay(date)), \(date.year)"
        guard microsecondOfDay != 0 else { return text }
        let seconds = microsecondOfDay / Instant.microsecondsPerSecond
        let time = "\(twoDigits(seconds / 3600)):\(twoDigits(seconds % 3600 / 60))"
        return text + " " + (seconds % 60 == 0 ? time : time + ":" + twoDigits(seconds % 60))
    }

    private static func twoDigits(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
}

extension Quantity {
    /// The canonical decimal with thousands separators, for people: `1,000.5`.
    public var groupedDescription: String { InvoiceText.grouped(description) }
}
