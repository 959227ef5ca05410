import Foundation

/// A server's connection URL as every client of Tally reads it (`DATABASE_URL`,
/// `AMQP_URL`, `SMTP_URL`): the scheme in lower case, the host (nil when absent or
/// empty), the port, the user and password percent-decoded, the path and the query.
/// Each client checks what its own scheme requires and says it in its own error.
public struct ConnectionURL: Sendable, Equatable {
    public let scheme: String
    public let host: String?
    public let port: Int?
    public let user: String?
    public let password: String?
    /// The path as written, percent-encoded, with its leading `/` (`""` when none).
    public let encodedPath: String
    /// The query's items in order (`?a=1&b`: `a` → `1`, `b` → nil).
    public let query: [Item]
    /// Whether the URL has a query at all (`?` alone is one, with no items).
    public let hasQuery: Bool

    public struct Item: Sendable, Equatable {
        public let name: String
        public let value: String?

        public init(name: String, value: String?) {
            self.name = name
            self.value = value
        }
    }

    /// Reads `text`; nil when it is not a URL or its scheme is not one of `schemes`
    /// (compared in lower case).
    public init?(_ text: String, schemes: Set<String>) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), schemes.contains(scheme) else {
            return nil
        }
        self.scheme = scheme
        self.host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        self.port = components.port
        self.user = components.percentEncodedUser?.removingPercentEncoding
        self.password = components.percentEncodedPassword?.removingPercentEncoding
        self.encodedPath = components.percentEncodedPath
        self.query = (components.queryItems ?? []).map { Item(name: $0.name, value: $0.value) }
        self.hasQuery = components.percentEncodedQuery != nil
    }

    /// The path without its leading slashes, percent-decoded (`/tally` → `tally`); nil when
    /// it does not decode.
    public var pathName: String? {
        String(encodedPath.drop { $0 == "/" }).removingPercentEncoding
    }

    /// The value of the first query item called `name`, if it has one.
    public func value(of name: String) -> String? {
        query.first { $0.name == name }?.value
    }
}
