import Crypto
import Foundation

/// A tenant API key as the tenant sees it once: `tally_` + 64 hex digits (256 random bits).
///
/// Only its SHA-256 digest is stored (SPEC §6: keys stored hashed). Because the key
/// is uniformly random, a fast digest cannot be brute-forced and lets every request be
/// authenticated with one indexed lookup.
public struct APIKey: Sendable, Hashable, CustomStringConvertible {
    /// The secret itself; shown to the tenant once, never stored or logged.
    public let secret: String

    static let scheme = "tally_"

    /// A fresh key from the system's cryptographic random source.
    public static func generate() -> APIKey {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return APIKey(secret: scheme + bytes.map { String(format: "%02x", $0) }.joined())
    }

    /// Wraps a presented bearer token; any string can be looked up, only ours match.
    public init(secret: String) {
        self.secret = secret
    }

    /// Whether `token` has the form of a key Tally issues (`tally_` + 64 lower-case hex
    /// digits): anything else is refused without a database lookup.
    public static func isWellFormed(_ token: String) -> Bool {
        let bytes = token.utf8
        guard bytes.count == scheme.utf8.count + 64, token.hasPrefix(scheme) else { return false }
        return bytes.dropFirst(scheme.utf8.count).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The digest stored in `api_keys.key_sha256`.
    public var sha256: Data { Data(SHA256.hash(data: Data(secret.utf8))) }

    /// The first characters, stored to tell keys apart in listings.
    public var prefix: String { String(secret.prefix(Self.scheme.count + 8)) }

    /// Never the secret: keys must not reach logs through string interpolation.
    public var description: String { "APIKey(\(prefix)…)" }
}
