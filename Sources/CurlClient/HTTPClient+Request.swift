import Foundation

extension HTTPClient {
    /// An HTTP method. Any token may be used; the common ones are named.
    public struct Method: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String

        /// A method by name; `HTTPClient.send` refuses one that is not an HTTP token.
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let get = Method(rawValue: "GET")
        public static let head = Method(rawValue: "HEAD")
        public static let post = Method(rawValue: "POST")
        public static let put = Method(rawValue: "PUT")
        public static let patch = Method(rawValue: "PATCH")
        public static let delete = Method(rawValue: "DELETE")

        public var description: String { rawValue }
    }

    /// One request to send.
    ///
    /// Redirects are not followed unless asked: a redirected POST to Stripe or a webhook
    /// receiver should surface as a 3xx, not be replayed elsewhere.
    public struct Request: Sendable {
        public var method: Method
        /// An `http://` or `https://` URL; other schemes are refused.
        public var url: String
        public var headers: Headers
        /// Sent as is; POST, PUT and PATCH without a body send an empty one.
        public var body: Data?
        /// Time allowed to connect, TLS handshake included.
        public var connectTimeout: Duration
        /// Time allowed for the whole exchange, connecting included.
        public var timeout: Duration
        public var followsRedirects: Bool
        /// `host:port:address[,address]` entries: connect to these addresses for that host
        /// instead of resolving it again (a webhook goes where its URL was checked to go).
        public var pinnedAddresses: [String] = []

        /// A request with the defaults: GET, no body, 10 s to connect, 30 s in all, no redirects followed.
        public init(
            method: Method = .get, url: String, headers: Headers = [:], body: Data? = nil,
            connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(30), followsRedirects: Bool = false
        ) {
            self.method = method
            self.url = url
            self.headers = headers
            self.body = body
            self.connectTimeout = connectTimeout
            self.timeout = timeout
            self.followsRedirects = followsRedirects
        }

        /// The body to send, if any: methods that carry one get an empty body rather than none.
        var bodyToSend: Data? {
            if let body { return body }
            return [.post, .put, .patch].contains(method) ? Data() : nil
        }
    }

    /// The server's answer; any status, 4xx and 5xx included, is a response and not an error.
    public struct Response: Sendable {
        public let status: Int
        /// The headers of the final response (after any followed redirects).
        public let headers: Headers
        public let body: Data

        /// Whether the status is 2xx.
        public var isSuccess: Bool { (200..<300).contains(status) }
    }
}
