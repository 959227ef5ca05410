import CivilTime
import Foundation

/// RFC 3339 instants: `2026-11-24T18:40:00.123Z`, with any offset and 0–9 fractional
/// digits on input; UTC with microseconds on output (PostgreSQL's precision).
public enum RFC3339 {
    /// The instant `text` names, or nil when it is not RFC 3339.
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes[4] == dash, bytes[7] == dash,
            bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
            bytes[13] == colon, bytes[16] == colon,
            let year = DecimalDigits.number(bytes, 0, 4), let month = DecimalDigits.number(bytes, 5, 2), let day = DecimalDigits.number(bytes, 8, 2),
            let hour = DecimalDigits.number(bytes, 11, 2), let minute = DecimalDigits.number(bytes, 14, 2),
            let second = DecimalDigits.number(bytes, 17, 2),
            CivilDate(year: Int64(year), month: Int64(month), day: Int64(day)).isValid,
            hour < 24, minute < 60, second < 60
        else { return nil }
        var index = 19
        var micros = 0
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < bytes.count, let digit = DecimalDigits.digit(bytes[index]) {
                if digits < 6 { micros = micros * 10 + digit }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        guard index < bytes.count, let offset = offsetSeconds(bytes[index...]) else { return nil }
        let days = Int(CivilDate(year: Int64(year), month: Int64(month), day: Int64(day)).daysSinceEpoch)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + Double(micros) / 1_000_000)
    }

    /// `date` in UTC with six fractional digits, e.g. `2026-11-24T18:40:00.123000Z`.
    public static func format(_ date: Date) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        write(date, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `format(date)`'s 27 bytes to `bytes` (the JSON writer's hot path).
    public static func write(_ date: Date, into bytes: inout [UInt8]) {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        guard !TimestampText.write(microsecondsSinceEpoch: micros, into: &bytes) else { return }
        // Outside RFC 3339's four-digit years.
        let civil = CivilDate(daysSinceEpoch: micros.floorDivided(by: 1_000_000).floorDivided(by: 86_400))
        bytes.append(contentsOf: "\(civil.year)-\(civil.month)-\(civil.day)T00:00:00.000000Z".utf8)
    }

    private static let dash = UInt8(ascii: "-")
    private static let colon = UInt8(ascii: ":")

    private static func offsetSeconds(_ rest: ArraySlice<UInt8>) -> Int? {
        let bytes = Array(rest)
        if bytes.count == 1, bytes[0] == UInt8(ascii: "Z") || bytes[0] == UInt8(ascii: "z") { return 0 }
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "+") || bytes[0] == dash, bytes[3] == colon,
            let hours = DecimalDigits.number(bytes, 1, 2), let minutes = DecimalDigits.number(bytes, 4, 2), hours < 24, minutes < 60
        else { return nil }
        return (bytes[0] == dash ? -1 : 1) * (hours * 3600 + minutes * 60)
    }
}
