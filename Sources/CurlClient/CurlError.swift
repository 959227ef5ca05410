import CCurl

/// A failed HTTP request or SMTP delivery.
///
/// `description` gives the kind of failure and libcurl's fixed text for its code, never
/// the URL, headers, body or credentials; `String(reflecting:)` adds libcurl's detailed
/// message (which may name a host or a mail address) for logs that may hold it.
public struct CurlError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong, for callers deciding whether to retry.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable {
            case timeout, couldNotConnect, tls, responseTooLarge, loginDenied, rejected, cancelled, invalidRequest, other
        }
        let base: Base
        init(_ base: Base) { self.base = base }

        /// The connect or total timeout ran out; the server may still have acted on the request.
        public static let timeout = Code(.timeout)
        /// The host could not be resolved or refused the connection; nothing was sent.
        public static let couldNotConnect = Code(.couldNotConnect)
        /// TLS failed: handshake, certificate verification, or a required STARTTLS not offered.
        public static let tls = Code(.tls)
        /// The response body exceeded the client's limit and was discarded.
        public static let responseTooLarge = Code(.responseTooLarge)
        /// The SMTP server refused the credentials from the URL.
        public static let loginDenied = Code(.loginDenied)
        /// The SMTP server refused the message or a recipient; see `responseCode`.
        public static let rejected = Code(.rejected)
        /// The calling task was cancelled and the transfer aborted.
        public static let cancelled = Code(.cancelled)
        /// The request or message cannot be sent as given (bad URL, header, address); do not retry.
        public static let invalidRequest = Code(.invalidRequest)
        /// Any other libcurl failure; see `curlCode`.
        public static let other = Code(.other)

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// libcurl's `CURLcode` (e.g. 28 for a timeout), or nil when the failure was found before calling libcurl.
    public let curlCode: Int?
    /// The SMTP server's last reply code (e.g. 451, 550) when it refused; nil otherwise.
    public let responseCode: Int?
    /// libcurl's detailed message or the rule the input broke; may name a host or address,
    /// so only `invalidRequest` messages (which never quote values) appear in `description`.
    public let message: String

    init(_ code: Code, curlCode: Int? = nil, responseCode: Int? = nil, message: String) {
        self.code = code
        self.curlCode = curlCode
        self.responseCode = responseCode
        self.message = message
    }

    /// Whether the same request may succeed later: timeouts, refused connections and
    /// temporary (4xx) SMTP refusals. A timed-out request may already have taken effect,
    /// so only retry requests that are idempotent (e.g. carry an idempotency key).
    public var isTransient: Bool {
        switch code {
        case .timeout, .couldNotConnect: true
        case .rejected: (400..<500).contains(responseCode ?? 0)
        default: false
        }
    }

    public var description: String {
        guard let curlCode else { return "CurlError(\(code): \(message))" }
        let summary = String(cString: curl_easy_strerror(CURLcode(UInt32(clamping: curlCode))))
        if let responseCode { return "CurlError(\(code), curl \(curlCode): \(summary), reply \(responseCode))" }
        return "CurlError(\(code), curl \(curlCode): \(summary))"
    }

    public var debugDescription: String {
        var text = "CurlError(\(code)"
        if let curlCode { text += ", curl \(curlCode)" }
        if let responseCode { text += ", reply \(responseCode)" }
        return text + ", \(message))"
    }
}
