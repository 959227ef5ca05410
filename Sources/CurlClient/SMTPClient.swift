import BlockingIO
import CCurl
import Foundation

/// Delivers `MailMessage`s to one SMTP server over libcurl, one at a time.
///
/// Like `HTTPClient`, an actor on its own `DedicatedThreadExecutor`, so the blocking
/// transfer never occupies Swift's cooperative thread pool; it reuses one easy handle,
/// and with it the server connection. The envelope (`MAIL FROM`, `RCPT TO`) comes from
/// the message itself: its `from`, and every `to` and `cc`.
public actor SMTPClient {
    private let executor: DedicatedThreadExecutor
    private let configuration: SMTPConfiguration
    private let handle: CurlEasyHandle

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Starts the client's thread; connects only when the first message is sent.
    public init(configuration: SMTPConfiguration) throws(CurlError) {
        let (executor, handle) = try CurlEasyHandle.onOwnThread(named: "curl-smtp")
        self.executor = executor
        self.handle = handle
        self.configuration = configuration
    }

    // A plain deinit: `shutdown` is thread-safe. (`isolated deinit` here sent Swift 6.3.1's
    // optimizer into an ActorIsolationRequest cycle — "circular reference" in release builds.)
    deinit {
        executor.shutdown()
    }

    /// Renders `message` dated `date` and delivers it. Returns once the server accepted
    /// it for every recipient; a refusal throws `rejected` with the server's reply code
    /// (4xx: try again later; 5xx: do not).
    public func send(_ message: MailMessage, date: Date) async throws(CurlError) {
        let upload = Array(try message.rendered(date: date).utf8)
        // The server's replies go to the header callback; nothing should reach the body.
        let transfer = CurlTransfer(bodyLimit: 64 * 1024, upload: upload)
        do {
            try await handle.perform(transfer) { () throws(CurlError) in try configure(message, size: upload.count) }
        } catch {
            throw error.withSMTPReply(transfer.responseCode)
        }
    }

    private func configure(_ message: MailMessage, size: Int) throws(CurlError) {
        try handle.reset()
        try handle.set(CURLOPT_URL, configuration.curlURL)
        try handle.set(CURLOPT_PROTOCOLS_STR, "smtp,smtps")
        if let username = configuration.username { try handle.set(CURLOPT_USERNAME, username) }
        if let password = configuration.password { try handle.set(CURLOPT_PASSWORD, password) }
        try handle.set(CURLOPT_USE_SSL, Int(useSSL.rawValue))
        try handle.set(CURLOPT_SSL_VERIFYPEER, 1)
        try handle.set(CURLOPT_SSL_VERIFYHOST, 2)
        if let caBundlePath = configuration.caBundlePath { try handle.set(CURLOPT_CAINFO, caBundlePath) }
        try handle.set(CURLOPT_CONNECTTIMEOUT_MS, milliseconds: configuration.connectTimeout)
        try handle.set(CURLOPT_TIMEOUT_MS, milliseconds: configuration.timeout)
        try handle.set(CURLOPT_MAIL_FROM, "<\(message.from.address)>")
        try handle.set(CURLOPT_MAIL_RCPT, list: message.recipients.map { "<\($0.address)>" })
        try handle.set(CURLOPT_UPLOAD, 1)
        try handle.set(CURLOPT_INFILESIZE_LARGE, size: size)
    }

    private var useSSL: curl_usessl {
        switch configuration.security {
        case .implicitTLS, .startTLS: CURLUSESSL_ALL
        case .startTLSIfOffered: CURLUSESSL_TRY
        case .plaintext: CURLUSESSL_NONE
        }
    }
}

extension CurlError {
    /// This error with the SMTP server's refusal attached: a failure libcurl could not
    /// classify becomes `rejected` when the server answered 4xx or 5xx.
    func withSMTPReply(_ reply: Int) -> CurlError {
        guard (400..<600).contains(reply) else { return self }
        return CurlError(code == .other ? .rejected : code, curlCode: curlCode, responseCode: reply, message: message)
    }
}
