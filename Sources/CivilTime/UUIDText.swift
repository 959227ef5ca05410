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
        let parsed = text.utf8.withContiguousStorageIfAvailable { Self.parse($0) } ?? Array(text.utf8).withUnsafeBufferPointer { Self.parse($0) }
        guard let parsed else { return nil }
        self.init(uuid: parsed)
    }

    /// Parses the uuid's text from UTF-8 bytes (a PostgreSQL column, an event's field).
    public init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        guard let parsed = Self.parse(bytes) else { return nil }
        self.init(uuid: parsed)
    }

    /// One parser, on bytes, not generic: the generic form is not specialised across
    /// modules and went byte by byte through an iterator (a third of a billing run's
    /// planning was parsing uuids).
    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> uuid_t? {
        guard text.count == 36 else { return nil }
        var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let parsed: Bool = withUnsafeMutableBytes(of: &bytes) { output in
            var index = 0
            for written in 0..<16 {
                if index == 8 || index == 13 || index == 18 || index == 23 {
                    guard text[index] == UInt8(ascii: "-") else { return false }
                    index += 1
                }
                guard let high = HexDigit.value(text[index]), let low = HexDigit.value(text[index + 1]) else { return false }
                output[written] = high << 4 | low
                index += 2
            }
            return true
        }
        return parsed ? bytes : nil
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
