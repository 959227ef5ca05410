import CivilTime
import Crypto
import Foundation

/// Verifies the `Stripe-Signature` header of a webhook (SPEC §6): `t=<unix seconds>,
/// v1=<hex HMAC-SHA256 of "t.body" with the endpoint secret>[,v1=…]`. The timestamp must
/// be within `tolerance` of now (replays of old deliveries are refused) and one `v1`
/// must match, compared in constant time.
struct StripeWebhookSignature: Sendable {
    let secret: String
    var tolerance: TimeInterval = 300

    enum Failure: Error, Equatable {
        case malformed
        case stale
        case mismatch
    }

    func verify(header: String?, body: [UInt8], now: Date) throws(Failure) {
        guard let header else { throw .malformed }
        var timestamp: Int64?
        var signatures: [[UInt8]] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { timestamp = Int64(pair[1]) }
            if pair[0] == "v1", let bytes = Self.hexBytes(pair[1]) { signatures.append(bytes) }
        }
        guard let timestamp, !signatures.isEmpty else { throw .malformed }
        guard abs(now.timeIntervalSince1970 - Double(timestamp)) <= tolerance else { throw .stale }
        let expected = Array(Self.mac(secret: secret, timestamp: timestamp, body: body))
        guard signatures.contains(where: { Self.constantTimeEqual($0, expected) }) else { throw .mismatch }
    }

    /// HMAC-SHA256 of "timestamp.body" (what Stripe signs; also how tests sign).
    static func mac(secret: String, timestamp: Int64, body: [UInt8]) -> HashedAuthenticationCode<SHA256> {
        HMAC<SHA256>.authenticationCode(for: Array("\(timestamp).".utf8) + body, using: SymmetricKey(data: Array(secret.utf8)))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = HexDigit.value(digits[index]), let low = HexDigit.value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }
}
