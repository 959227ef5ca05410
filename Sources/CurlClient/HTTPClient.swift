import BlockingIO
import CCurl
import Foundation

/// An HTTP(S) client over libcurl that sends one request at a time.
///
/// The client is an actor on its own `DedicatedThreadExecutor`, so the blocking
/// `curl_easy_perform` never occupies Swift's cooperative thread pool; concurrent callers
/// queue. It reuses one easy handle, and with it the connection to a host. TLS peer and
/// host-name verification are always on. Response bodies over
/// `Configuration.maxResponseBytes` fail with `responseTooLarge` instead of filling memory.
public actor HTTPClient {
    /// Settings shared by every request of one client.
    public struct Configuration: Sendable {
        /// A PEM file of trusted CA certificates; nil uses the system bundle.
        public var caBundlePath: String?
        /// The largest response body accepted, in bytes.
        public var maxResponseBytes: Int
        /// Keep only the first `maxResponseBytes` of a longer body instead of failing with
        /// `responseTooLarge` (for callers that judge a response by its status, e.g. webhooks).
        public var truncatesLargeBodies: Bool
        /// Ends the transfer once the final response's headers are in: the answer is its
        /// status and headers, with no body (a webhook receiver that answered 200 and then
        /// sent its body slowly was judged by the body's timeout, not by its status).
        public var readsBody: Bool

        /// The system CA bundle and an 8 MiB response limit unless given.
        public init(
            caBundlePath: String? = nil, maxResponseBytes: Int = 8 * 1024 * 1024, truncatesLargeBodies: Bool = false, readsBody: Bool = true
        ) {
            self.caBundlePath = caBundlePath
            self.maxResponseBytes = maxResponseBytes
            self.truncatesLargeBodies = truncatesLargeBodies
            self.readsBody = readsBody
        }
    }

    private let executor: DedicatedThreadExecutor
    private let configuration: Configuration
    private let handle: CurlEasyHandle

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Starts the client's thread; throws only if libcurl cannot be initialized.
    public init(configuration: Configuration = .init()) throws(CurlError) {
        let (executor, handle) = try CurlEasyHandle.onOwnThread(named: "curl-http")
        self.executor = executor
        self.handle = handle
        self.configuration = configuration
    }

    // A plain deinit: `shutdown` is thread-safe. (`isolated deinit` here sent Swift 6.3.1's
    // optimizer into an ActorIsolationRequest cycle — "circular reference" in release builds.)
    deinit {
        executor.shutdown()
    }

    /// Sends `request` and returns the server's answer, whatever its status. Throws only
    /// when no complete answer arrived (timeout, refused connection, TLS, oversized body,
    /// cancellation) or the request is malformed.
    public func send(_ request: Request) async throws(CurlError) -> Response {
        let transfer = CurlTransfer(
            bodyLimit: configuration.maxResponseBytes, truncatesBody: configuration.truncatesLargeBodies, stopsAfterHeaders: !configuration.readsBody)
        try await handle.perform(transfer) { () throws(CurlError) in try configure(request) }
        return Response(
            status: transfer.responseCode,
            headers: Headers(responseLines: transfer.headerLines),
            body: transfer.body
        )
    }

    private func configure(_ request: Request) throws(CurlError) {
        // libcurl would guess `http://` for a URL without a scheme; say it outright instead.
        let scheme = request.url.prefix { $0 != ":" }.lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw CurlError(.invalidRequest, message: "the URL must start with http:// or https://")
        }
        let body = request.bodyToSend
        try handle.reset()
        try handle.set(CURLOPT_URL, request.url)
        try handle.set(CURLOPT_PROTOCOLS_STR, "http,https")
        try handle.set(CURLOPT_CONNECTTIMEOUT_MS, milliseconds: request.connectTimeout)
        try handle.set(CURLOPT_TIMEOUT_MS, milliseconds: request.timeout)
        try handle.set(CURLOPT_SSL_VERIFYPEER, 1)
        try handle.set(CURLOPT_SSL_VERIFYHOST, 2)
        if let caBundlePath = configuration.caBundlePath { try handle.set(CURLOPT_CAINFO, caBundlePath) }
        // Rejects a declared Content-Length over the limit before any byte is read.
        if !configuration.truncatesLargeBodies { try handle.set(CURLOPT_MAXFILESIZE_LARGE, size: configuration.maxResponseBytes) }
        // A proxy's "200 Connection established" is not the answer whose headers end the
        // transfer: without this the transfer stopped there, before the request was sent.
        if !configuration.readsBody { try handle.set(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1) }
        if request.followsRedirects {
            try handle.set(CURLOPT_FOLLOWLOCATION, 1)
            try handle.set(CURLOPT_MAXREDIRS, 5)
            try handle.set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        }
        if !request.pinnedAddresses.isEmpty {
            try handle.set(CURLOPT_RESOLVE, list: request.pinnedAddresses)
            // A proxy from the environment would resolve the host itself, past the pin.
            try handle.set(CURLOPT_PROXY, "")
        }
        try configureMethod(request.method, body: body)
        try handle.set(CURLOPT_HTTPHEADER, list: request.headers.curlLines(hasBody: body != nil))
    }

    private func configureMethod(_ method: Method, body: Data?) throws(CurlError) {
        guard Headers.isToken(method.rawValue) else {
            throw CurlError(.invalidRequest, message: "the method is not an HTTP token")
        }
        if let body {
            guard method != .get, method != .head else {
                throw CurlError(.invalidRequest, message: "a \(method) request cannot carry a body")
            }
            try handle.setPostFields(body)
            if method != .post { try handle.set(CURLOPT_CUSTOMREQUEST, method.rawValue) }
            return
        }
        switch method {
        case .get: try handle.set(CURLOPT_HTTPGET, 1)
        case .head: try handle.set(CURLOPT_NOBODY, 1)
        default: try handle.set(CURLOPT_CUSTOMREQUEST, method.rawValue)
        }
    }
}
