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
        let random = (generator.next() as UInt64, generator.next() as UInt64)
        var bytes: (UInt64, UInt64) = (millisecondsSinceEpoch << 16 | random.0 & 0xFFFF, random.1)
        bytes.0 = bytes.0 & ~0xF000 | 0x7000  // version 7
        bytes.1 = bytes.1 & ~(0xC0 << 56) | (0x80 << 56)  // RFC 9562 variant
        let hex = JSONWriter.hexDigits
        return String(unsafeUninitializedCapacity: 36) { text in
            var index = 0
            for position in 0..<16 {
                if index == 8 || index == 13 || index == 18 || index == 23 {
                    text[index] = UInt8(ascii: "-")
                    index += 1
                }
                let word = position < 8 ? bytes.0 : bytes.1
                let byte = UInt8(truncatingIfNeeded: word >> (8 * (7 - position % 8)))
                text[index] = hex[Int(byte >> 4)]
                text[index + 1] = hex[Int(byte & 0x0F)]
                index += 2
            }
            return 36
        }
    }
}
