import Crypto
import Foundation

/// The `Tally-Signature` header of a webhook delivery (SPEC §6, signed like Stripe's):
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with one more `v1=`
/// for the previous secret during the day after a rotation. A receiver recomputes the
/// HMAC over the raw body it got, compares in constant time, and refuses an old `t`.
public enum WebhookSignature {
    public static let header = "Tally-Signature"

    /// The header value for `body` sent at `timestamp` (unix seconds).
    public static func value(body: [UInt8], timestamp: Int64, secrets: [String]) -> String {
        (["t=\(timestamp)"] + secrets.map { "v1=" + hex(body: body, timestamp: timestamp, secret: $0) }).joined(separator: ",")
    }

    static func hex(body: [UInt8], timestamp: Int64, secret: String) -> String {
        var signed = Array("\(timestamp).".utf8)
        signed += body
        let code = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
        return code.map { String(format: "%02x", $0) }.joined()
    }
}
