import BlockingIO
import CCurl
import Foundation

/// libcurl's process-wide setup. A global `let` is initialized exactly once, behind
/// `swift_once`, so concurrent first clients cannot run `curl_global_init` twice.
/// OpenSSL is set up first, without its exit-time cleanup (`OpenSSLAtExit`).
private let globalInitResult: CURLcode = {
    OpenSSLAtExit.keepUntilProcessExit()
    return curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}()

/// One libcurl easy handle, owned by one client actor.
///
/// libcurl forbids using an easy handle from two threads at once. This class is not
/// `Sendable`, so it cannot leave the actor that stores it, and that actor runs on one
/// `DedicatedThreadExecutor`; `perform` also asserts it is on that thread. Reusing the
/// handle (reset between transfers) keeps libcurl's connection cache, so consecutive
/// requests to one host reuse the connection.
final class CurlEasyHandle {
    private let handle: UnsafeMutableRawPointer
    private let executor: DedicatedThreadExecutor
    private let errorBuffer: UnsafeMutablePointer<CChar>
    /// Lists handed to libcurl by pointer; they must outlive the transfer, so they are
    /// freed at the next reset or with the handle.
    private var lists: [UnsafeMutablePointer<curl_slist>] = []

    init(executor: DedicatedThreadExecutor) throws(CurlError) {
        guard globalInitResult == CURLE_OK else {
            throw CurlError(.other, curlCode: Int(globalInitResult.rawValue), message: "curl_global_init failed")
        }
        guard let handle = curl_easy_init() else {
            throw CurlError(.other, message: "curl_easy_init failed")
        }
        self.handle = handle
        self.executor = executor
        self.errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    /// A handle with a new dedicated thread to run it on; the thread is stopped again
    /// if libcurl cannot make the handle.
    static func onOwnThread(named name: String) throws(CurlError) -> (DedicatedThreadExecutor, CurlEasyHandle) {
        let executor = DedicatedThreadExecutor(name: name)
        do {
            return (executor, try CurlEasyHandle(executor: executor))
        } catch {
            executor.shutdown()
            throw error
        }
    }

    deinit {
        curl_easy_cleanup(handle)
        freeLists()
        errorBuffer.deallocate()
    }

    /// Clears every option of the previous transfer, keeping live connections and caches.
    func reset() throws(CurlError) {
        curl_easy_reset(handle)
        freeLists()
        errorBuffer[0] = 0
        try set(CURLOPT_ERRORBUFFER, pointer: errorBuffer)
        // Timeouts must not use signals: several handles run on several threads.
        try set(CURLOPT_NOSIGNAL, 1)
    }

    func set(_ option: CURLoption, _ value: Int) throws(CurlError) {
        try check(tally_curl_easy_setopt_long(handle, option, value), option)
    }

    func set(_ option: CURLoption, _ value: String) throws(CurlError) {
        try check(tally_curl_easy_setopt_string(handle, option, value), option)
    }

    func set(_ option: CURLoption, size: Int) throws(CurlError) {
        try check(tally_curl_easy_setopt_off_t(handle, option, curl_off_t(size)), option)
    }

    func set(_ option: CURLoption, milliseconds duration: Duration) throws(CurlError) {
        try set(option, duration.curlMilliseconds)
    }

    /// Hands libcurl a `curl_slist` of `strings` (headers, mail recipients).
    func set(_ option: CURLoption, list strings: [String]) throws(CurlError) {
        var list: UnsafeMutablePointer<curl_slist>?
        for string in strings {
            guard let extended = curl_slist_append(list, string) else {
                curl_slist_free_all(list)
                throw CurlError(.other, curlCode: Int(CURLE_OUT_OF_MEMORY.rawValue), message: "curl_slist_append failed")
            }
            list = extended
        }
        guard let list else { return }
        lists.append(list)
        try set(option, pointer: list)
    }

    /// Sets the request body; libcurl copies it, so it need not outlive this call.
    func setPostFields(_ body: Data) throws(CurlError) {
        try set(CURLOPT_POSTFIELDSIZE_LARGE, size: body.count)
        // A trailing byte keeps the pointer non-NULL even for an empty body: libcurl takes
        // NULL as "no fields, use the read callback" (stdin by default). The size above excludes it.
        var bytes = [UInt8](body) + [0]
        let code = bytes.withUnsafeMutableBytes { tally_curl_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, $0.baseAddress) }
        try check(code, CURLOPT_COPYPOSTFIELDS)
    }

    /// The last HTTP status or SMTP reply code; 0 when none was received.
    private var responseCode: Int {
        var code = 0
        _ = tally_curl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    /// Runs `configure` (which resets and sets this transfer's options) and then the
    /// transfer, blocking this thread throughout, so no other call on the owning actor can
    /// interleave; aborts within about a second when the calling task is cancelled.
    func perform(
        _ transfer: CurlTransfer,
        isolation: isolated (any Actor) = #isolation,
        configure: () throws(CurlError) -> Void
    ) async throws(CurlError) {
        let cancellation = transfer.cancellation
        let result = await withTaskCancellationHandler {
            // Using `isolation` makes this closure isolated to the owning actor (SE-0420);
            // without it, the closure and curl_easy_perform would run on the cooperative pool.
            _ = isolation
            return Result { () throws(CurlError) in
                try configure()
                try performBlocking(transfer)
            }
        } onCancel: {
            cancellation.cancel()
        }
        try result.get()
    }

    private func performBlocking(_ transfer: CurlTransfer) throws(CurlError) {
        assert(executor.isCurrentThread, "curl_easy_perform must run on the client's dedicated thread")
        if transfer.cancellation.isCancelled {
            throw CurlError(.cancelled, message: "cancelled before the transfer started")
        }
        try install(transfer)
        let code = withExtendedLifetime(transfer) { curl_easy_perform(handle) }
        transfer.responseCode = responseCode
        if code != CURLE_OK, !(code == CURLE_WRITE_ERROR && transfer.stoppedAfterHeaders) { throw error(for: code, transfer) }
    }

    /// Points libcurl's callbacks at `transfer`, unretained: `performBlocking` keeps it alive.
    private func install(_ transfer: CurlTransfer) throws(CurlError) {
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        try check(
            tally_curl_easy_setopt_write_callback(handle, CURLOPT_WRITEFUNCTION) { bytes, size, count, context in
                CurlTransfer.from(context).receiveBody(bytes, count: size * count)
            },
            CURLOPT_WRITEFUNCTION
        )
        try set(CURLOPT_WRITEDATA, pointer: context)
        try check(
            tally_curl_easy_setopt_write_callback(handle, CURLOPT_HEADERFUNCTION) { bytes, size, count, context in
                CurlTransfer.from(context).receiveHeader(bytes, count: size * count)
            },
            CURLOPT_HEADERFUNCTION
        )
        try set(CURLOPT_HEADERDATA, pointer: context)
        try check(
            tally_curl_easy_setopt_xferinfo_callback(handle, CURLOPT_XFERINFOFUNCTION) { context, _, _, _, _ in
                CurlTransfer.from(context).cancellation.isCancelled ? 1 : 0
            },
            CURLOPT_XFERINFOFUNCTION
        )
        try set(CURLOPT_XFERINFODATA, pointer: context)
        try set(CURLOPT_NOPROGRESS, 0)
        guard transfer.uploadSize > 0 else { return }
        try check(
            tally_curl_easy_setopt_read_callback(handle, CURLOPT_READFUNCTION) { buffer, size, count, context in
                CurlTransfer.from(context).sendUpload(into: buffer, capacity: size * count)
            },
            CURLOPT_READFUNCTION
        )
        try set(CURLOPT_READDATA, pointer: context)
    }

    private func set(_ option: CURLoption, pointer: UnsafeMutableRawPointer) throws(CurlError) {
        try check(tally_curl_easy_setopt_pointer(handle, option, pointer), option)
    }

    private func check(_ code: CURLcode, _ option: CURLoption) throws(CurlError) {
        guard code != CURLE_OK else { return }
        let reason = String(cString: curl_easy_strerror(code))
        throw CurlError(.invalidRequest, curlCode: Int(code.rawValue), message: "option \(option.rawValue): \(reason)")
    }

    private func error(for code: CURLcode, _ transfer: CurlTransfer) -> CurlError {
        let detail = errorBuffer[0] == 0 ? String(cString: curl_easy_strerror(code)) : String(cString: errorBuffer)
        let curlCode = Int(code.rawValue)
        if transfer.cancellation.isCancelled && code == CURLE_ABORTED_BY_CALLBACK {
            return CurlError(.cancelled, curlCode: curlCode, message: detail)
        }
        if transfer.exceededLimit || code == CURLE_FILESIZE_EXCEEDED {
            return CurlError(.responseTooLarge, curlCode: curlCode, message: detail)
        }
        return CurlError(Self.kind(of: code), curlCode: curlCode, message: detail)
    }

    private static func kind(of code: CURLcode) -> CurlError.Code {
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            .timeout
        case CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT:
            .couldNotConnect
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_USE_SSL_FAILED,
            CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
            CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE,
            CURLE_SSL_CLIENTCERT, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED,
            CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_SHUTDOWN_FAILED:
            .tls
        case CURLE_LOGIN_DENIED, CURLE_AUTH_ERROR:
            .loginDenied
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            .invalidRequest
        default:
            .other
        }
    }

    private func freeLists() {
        lists.forEach { curl_slist_free_all($0) }
        lists.removeAll()
    }
}

extension Duration {
    /// Whole milliseconds for libcurl, at least 1: libcurl reads 0 as "no timeout".
    var curlMilliseconds: Int {
        let (seconds, attoseconds) = components
        let (milliseconds, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return Int.max }
        return max(1, Int(milliseconds) + Int(attoseconds / 1_000_000_000_000_000))
    }
}
