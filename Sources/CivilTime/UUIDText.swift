import Foundation

/// Uuids as text, by hand: Foundation formats them through `snprintf` and parses them
/// through `sscanf`, and Tally writes, reads and compares thousands per batch (event
/// tenant ids, PostgreSQL parameters and rows). The same text forms as Foundation's,
/// checked against it in `PostgresClientTests` (`PostgresTextTests`).
extension UUID {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in either case (what `UUID(uuidString:)`
    /// accepts); nil for anything else.
    public init?(text: some StringProtocol) {
        var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let parsed: Bool = withUnsafeMutableBytes(of: &bytes) { output in
            var count = 0
            var written = 0
            var high: UInt8? = nil
            for byte in text.utf8 {
                defer { count += 1 }
                guard count < 36 else { return false }
                if count == 8 || count == 13 || count == 18 || count == 23 {
                    guard byte == UInt8(ascii: "-") else { return false }
                    continue
                }
                let nibble: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = byte - UInt8(ascii: "A") + 10
                default: return false
                }
                if let first = high {
                    output[written] = first << 4 | nibble
                    written += 1
                    high = nil
                } else {
                    high = nibble
                }
            }
            return count == 36 && written == 16
        }
        guard parsed else { return nil }
        self.init(uuid: bytes)
    }

    /// The uuid in lower case, as PostgreSQL writes it. Foundation's `uuidString` formats
    /// through `snprintf` and answers upper case; the Aggregator writes and compares
    /// thousands of tenant ids per batch.
    public var lowercasedText: String {
        String(unsafeUninitializedCapacity: 36) { buffer in
            var index = 0
            withUnsafeBytes(of: uuid) { bytes in
                for (offset, byte) in bytes.enumerated() {
                    if offset == 4 || offset == 6 || offset == 8 || offset == 10 {
                        buffer[index] = UInt8(ascii: "-")
                        index += 1
                    }
                    buffer[index] = Self.hexDigits[Int(byte >> 4)]
                    buffer[index + 1] = Self.hexDigits[Int(byte & 0x0F)]
                    index += 2
                }
            }
            return index
        }
    }

    /// Whether this uuid sorts before `other` as PostgreSQL sorts uuids (bytewise) — the
    /// order of their texts too, without making them.
    public func precedes(_ other: UUID) -> Bool {
        withUnsafeBytes(of: uuid) { lhs in
            withUnsafeBytes(of: other.uuid) { rhs in
                for index in 0..<16 where lhs[index] != rhs[index] { return lhs[index] < rhs[index] }
                return false
            }
        }
    }
}
