import ConnectionURLs
import Foundation

/// Where and how to deliver mail, parsed from an `SMTP_URL` such as
/// `smtp://user:pass@mail.example.com:587` or `smtps://user:pass@mail.example.com`.
///
/// For `smtp://`, the query parameter `starttls=required|optional|never` says whether
/// to upgrade with STARTTLS; without it, a URL carrying credentials requires STARTTLS,
/// so a password never crosses the network in clear unless the URL says so. The
/// password never appears in `description`.
public struct SMTPConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// How the connection to the server is protected.
    public enum Security: String, Sendable {
        /// TLS from the first byte (`smtps://`, usually port 465).
        case implicitTLS
        /// STARTTLS is required; a server that does not offer it fails with `tls`.
        case startTLS
        /// STARTTLS when the server offers it, plaintext otherwise.
        case startTLSIfOffered
        /// Plaintext only, for a local sink.
        case plaintext
    }

    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var security: Security
    /// A PEM file of trusted CA certificates; nil uses the system bundle.
    public var caBundlePath: String?
    /// Time allowed to connect, TLS handshake included.
    public var connectTimeout: Duration
    /// Time allowed for one whole delivery.
    public var timeout: Duration

    /// A server by its parts; STARTTLS required, 10 s to connect and 60 s per message unless given.
    public init(
        host: String, port: Int, username: String? = nil, password: String? = nil,
        security: Security = .startTLS, caBundlePath: String? = nil,
        connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(60)
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.security = security
        self.caBundlePath = caBundlePath
        self.connectTimeout = connectTimeout
        self.timeout = timeout
    }

    /// Parses an `smtp://` or `smtps://` URL; user and password are percent-decoded and
    /// the port defaults to 25 (`smtp`) or 465 (`smtps`).
    public init(url: String) throws(CurlError) {
        guard let parsed = ConnectionURL(url, schemes: ["smtp", "smtps"]) else {
            throw CurlError(.invalidRequest, message: "SMTP_URL must look like smtp://user:pass@host:port")
        }
        guard let host = parsed.host else {
            throw CurlError(.invalidRequest, message: "SMTP_URL names no host")
        }
        self.init(
            host: host,
            port: parsed.port ?? (parsed.scheme == "smtps" ? 465 : 25),
            username: parsed.user,
            password: parsed.password,
            security: try Self.security(scheme: parsed.scheme, startTLS: parsed.value(of: "starttls"), hasCredentials: parsed.user != nil)
        )
    }

    private static func security(scheme: String, startTLS: String?, hasCredentials: Bool) throws(CurlError) -> Security {
        switch (scheme, startTLS) {
        case ("smtps", nil): return .implicitTLS
        case ("smtps", _): throw CurlError(.invalidRequest, message: "SMTP_URL: starttls applies to smtp:// only")
        case (_, "required"): return .startTLS
        case (_, "optional"): return .startTLSIfOffered
        case (_, "never"): return .plaintext
        case (_, nil): return hasCredentials ? .startTLS : .startTLSIfOffered
        default: throw CurlError(.invalidRequest, message: "SMTP_URL: starttls must be required, optional or never")
        }
    }

    /// The URL handed to libcurl: scheme, host and port only; credentials go separately.
    var curlURL: String { "\(scheme)://\(hostInURL):\(port)" }

    private var scheme: String { security == .implicitTLS ? "smtps" : "smtp" }
    private var hostInURL: String { host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host }

    public var description: String {
        let user = username.map { "\($0)@" } ?? ""
        return "\(scheme)://\(user)\(hostInURL):\(port) (\(security))"
    }
}
