import BlockingIO
import Foundation

/// Where webhooks may be sent (SPEC §6): `http(s)` URLs with a host, no credentials,
/// whose every resolved address is public. Loopback, private (RFC 1918, fc00::/7),
/// link-local (cloud metadata lives there), carrier-grade NAT, unspecified and multicast
/// addresses are refused unless `allowPrivate` (`TALLY_WEBHOOK_ALLOW_PRIVATE=1`, set
/// for the local stack) — a tenant must not make Tally call into its own network.
///
/// The Billing API checks an endpoint when it is created or changed; the Notifier checks
/// again at every delivery and connects only to the addresses it checked (DNS can change).
public actor WebhookAddressPolicy {
    private let executor: DedicatedThreadExecutor
    public let allowPrivate: Bool

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// A policy whose name lookups (blocking `getaddrinfo`) run on a thread of its own.
    public init(allowPrivate: Bool) {
        self.executor = DedicatedThreadExecutor(name: "webhook-dns")
        self.allowPrivate = allowPrivate
    }

    deinit {
        executor.shutdown()
    }

    /// A URL that passed, with the addresses to connect to (libcurl `host:port:address`).
    public struct Checked: Sendable, Equatable {
        public let url: String
        public let host: String
        public let port: Int
        public let addresses: [String]

        /// `CURLOPT_RESOLVE` entries pinning the host to the checked addresses; none for an
        /// address literal (nothing is looked up, and libcurl cannot parse an IPv6 host there).
        public var pinned: [String] {
            guard !addresses.isEmpty, !WebhookAddressPolicy.isLiteral(host) else { return [] }
            return ["\(host):\(port):" + addresses.map { $0.contains(":") ? "[\($0)]" : $0 }.joined(separator: ",")]
        }
    }

    /// Why a URL is refused, in words for the API's `field: url` error and the park reason.
    public struct Refusal: Error, Equatable, CustomStringConvertible, Sendable {
        public let description: String
        /// False when a later check may pass (the name did not resolve just now).
        public var isPermanent = true
    }

    /// Checks the URL of an endpoint being created or changed: `check`, and printable ASCII
    /// only — Foundation takes a URL with a line break or a space in it, which libcurl then
    /// refuses at every delivery. (Deliveries check with `check` alone: an endpoint stored
    /// before this rule keeps working as it did.)
    public func checkNew(_ url: String) throws(Refusal) -> Checked {
        guard url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw Refusal(
                description: "must not contain spaces, control or non-ASCII characters: percent-encode them (a host as its xn-- name)")
        }
        return try check(url)
    }

    /// Checks `url`; throws a `Refusal` saying why it may not be used.
    public func check(_ url: String) throws(Refusal) -> Checked {
        guard url.count <= 2048, let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https"
        else { throw Refusal(description: "must be an http:// or https:// URL of at most 2048 characters") }
        guard let host = components.host, !host.isEmpty else { throw Refusal(description: "must name a host") }
        guard components.user == nil, components.password == nil else {
            throw Refusal(description: "must not carry credentials; verify deliveries with the signing secret instead")
        }
        let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        if let port = components.port, !(1...65_535).contains(port) {
            throw Refusal(description: "has port \(port); a port is 1 to 65535 (or none: 80 for http, 443 for https)")
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        let addresses = Self.resolve(bareHost)
        guard !addresses.isEmpty else { throw Refusal(description: "host \(bareHost) does not resolve", isPermanent: false) }
        if !allowPrivate, let inside = addresses.first(where: Self.isPrivate) {
            throw Refusal(
                description: "resolves to \(inside), a loopback, private or link-local address; webhooks go to public addresses only")
        }
        // The scheme as stored and sent is lower case (RFC 3986 §3.1: case-insensitive).
        let normalized = scheme + url.dropFirst(scheme.utf8.count)
        return Checked(url: normalized, host: bareHost, port: port, addresses: addresses)
    }

    /// Every address `host` resolves to, as text (IPv4 dotted, IPv6 colon form).
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var addresses: [String] = []
        for entry in sequence(first: first, next: { $0.pointee.ai_next }) {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0
            else { continue }
            let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !addresses.contains(text) { addresses.append(text) }
        }
        return addresses
    }

    static func isLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Whether `address` (numeric text) is one webhooks must not reach.
    static func isPrivate(_ address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return isPrivate(ipv4: UInt32(bigEndian: v4.s_addr))
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address.split(separator: "%").first.map(String.init) ?? address, &v6) == 1 else { return true }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        func ipv4(_ at: Int) -> UInt32 { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        // IPv4 inside IPv6: mapped ::ffff:a.b.c.d, compatible ::a.b.c.d (:: and ::1 are
        // 0.0.0.0 and 0.0.0.1, both refused), NAT64 64:ff9b::/96, 6to4 2002:AABB:CCDD::/48.
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && (bytes[10...11] == [0xFF, 0xFF] || bytes[10...11] == [0, 0]) {
            return isPrivate(ipv4: ipv4(12))
        }
        if bytes[0...3] == [0x00, 0x64, 0xFF, 0x9B] {
            return bytes[4...5] != [0, 0] || isPrivate(ipv4: ipv4(12))  // 64:ff9b:1::/48 is local-use NAT64
        }
        if bytes[0...1] == [0x20, 0x02] { return isPrivate(ipv4: ipv4(2)) }
        if bytes[0] & 0xFE == 0xFC { return true }  // fc00::/7 unique local
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return true }  // fe80::/10 link-local
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0xC0 { return true }  // fec0::/10 site-local (deprecated)
        if bytes[0] == 0xFF { return true }  // multicast
        return false
    }

    private static func isPrivate(ipv4 value: UInt32) -> Bool {
        let ranges: [(UInt32, Int)] = [
            (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
            (0x0A00_0000, 8),  // 10/8
            (0x6440_0000, 10),  // 100.64/10 carrier-grade NAT
            (0x7F00_0000, 8),  // 127/8 loopback
            (0xA9FE_0000, 16),  // 169.254/16 link-local, cloud metadata
            (0xAC10_0000, 12),  // 172.16/12
            (0xC000_0000, 24),  // 192.0.0/24 IETF protocol assignments
            (0xC0A8_0000, 16),  // 192.168/16
            (0xC612_0000, 15),  // 198.18/15 benchmarking
            (0xE000_0000, 4),  // 224/4 multicast
            (0xF000_0000, 4),  // 240/4 reserved, broadcast
        ]
        return ranges.contains { network, length in value >> (32 - UInt32(length)) == network >> (32 - UInt32(length)) }
    }
}
