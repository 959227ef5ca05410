import Foundation

/// New idempotency keys for usage events: UUID version 7 (RFC 9562), time-ordered,
/// so ids sort by creation time and index well, with 74 random bits against clashes.
///
/// Create the id once, where the usage happens, and reuse it on every retry.
public enum EventID {
    /// A fresh UUIDv7 string, e.g. `01936f3e-8c4a-7b21-9f0e-3c5d2a1b4e77`.
    public static func make(at date: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        return make(millisecondsSinceEpoch: UInt64(max(0, date.timeIntervalSince1970 * 1000)), using: &generator)
    }

    /// A UUIDv7 for `millisecondsSinceEpoch` drawing its random bits from `generator`.
    public static func make(millisecondsSinceEpoch: UInt64, using generator: inout some RandomNumberGenerator) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: millisecondsSinceEpoch >> (8 * (5 - index))) }
        for index in 6..<16 { bytes[index] = UInt8.random(in: .min ... .max, using: &generator) }
        bytes[6] = 0x70 | (bytes[6] & 0x0F)  // version 7
        bytes[8] = 0x80 | (bytes[8] & 0x3F)  // RFC 9562 variant
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }
}
