/// Fixed-width ASCII digit fields, as timestamps write them (`2026`, `02`, `123456`).
/// Shared by the RFC 3339 and PostgreSQL timestamp parsers.
public enum DecimalDigits {
    /// The value of one ASCII digit, or nil.
    public static func digit(_ byte: UInt8) -> Int? {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// The number written by exactly `count` digits at `start`, or nil if any is not a digit.
    public static func number(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int? {
        bytes.withUnsafeBufferPointer { number($0, start, count) }
    }

    /// The number written by exactly `count` digits at `start` of `bytes`, or nil.
    public static func number(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int? {
        guard start >= 0, start + count <= bytes.count else { return nil }
        var value = 0
        for byte in bytes[start..<start + count] {
            guard let digit = digit(byte) else { return nil }
            value = value * 10 + digit
        }
        return value
    }
}
