/// An instant as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds), written digit by digit:
/// the one form both RFC 3339 output (`UsageEvents.RFC3339`) and PostgreSQL's `timestamptz`
/// parameters (`PostgresTimestamp`) use, written by the thousand per batch, where
/// `String(format:)` would go through `vfprintf`.
public enum TimestampText {
    /// Appends the 27 bytes for the instant `micros` microseconds after 1970-01-01 UTC;
    /// appends nothing and answers false when its year is outside 0…9999 (callers decide
    /// what such a year looks like).
    @discardableResult
    public static func write(microsecondsSinceEpoch micros: Int64, into bytes: inout [UInt8]) -> Bool {
        let seconds = micros.floorDivided(by: 1_000_000)
        let fraction = micros - seconds * 1_000_000
        let days = seconds.floorDivided(by: 86_400)
        let secondOfDay = seconds - days * 86_400
        let civil = CivilDate(daysSinceEpoch: days)
        guard (0...9999).contains(civil.year) else { return false }
        digits(civil.year, 4, &bytes)
        bytes.append(UInt8(ascii: "-"))
        digits(civil.month, 2, &bytes)
        bytes.append(UInt8(ascii: "-"))
        digits(civil.day, 2, &bytes)
        bytes.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2, &bytes)
        bytes.append(UInt8(ascii: ":"))
        digits(secondOfDay % 3600 / 60, 2, &bytes)
        bytes.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2, &bytes)
        bytes.append(UInt8(ascii: "."))
        digits(fraction, 6, &bytes)
        bytes.append(UInt8(ascii: "Z"))
        return true
    }

    /// `value` (0 ≤ value < 10^count) as exactly `count` decimal digits.
    private static func digits(_ value: Int64, _ count: Int, _ bytes: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<count { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
            rest %= divisor
            divisor /= 10
        }
    }
}
