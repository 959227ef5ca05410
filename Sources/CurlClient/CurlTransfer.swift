import Foundation
import Synchronization

/// What one transfer uploads and receives. libcurl's callbacks reach it through an
/// unretained pointer while `CurlEasyHandle.perform` keeps it alive, always on the
/// handle's thread; only `cancellation` is touched from other threads.
final class CurlTransfer {
    /// Bytes of headers kept per response; libcurl 7.88 limits each line but not their sum.
    static let headerLimit = 256 * 1024

    let cancellation = CancellationFlag()
    private let bodyLimit: Int
    private(set) var body = Data()
    /// The header lines of the last response (after redirects and `100 Continue`), without CRLF.
    private(set) var headerLines: [String] = []
    private var headerBytes = 0
    /// Set when the body or headers went past their limit and the transfer was aborted.
    private(set) var exceededLimit = false
    /// The HTTP status or last SMTP reply code, read right after the transfer (0 if none),
    /// before any other call on the owning actor can reuse the handle.
    var responseCode = 0
    private let upload: [UInt8]
    private var uploadOffset = 0
    /// Past `bodyLimit`, keep reading and drop the rest instead of aborting.
    private let truncatesBody: Bool
    /// End the transfer at the blank line after the final response's headers.
    private let stopsAfterHeaders: Bool
    /// Set when the transfer was ended there on purpose (libcurl reports a write error).
    private(set) var stoppedAfterHeaders = false

    init(bodyLimit: Int, upload: [UInt8] = [], truncatesBody: Bool = false, stopsAfterHeaders: Bool = false) {
        self.bodyLimit = bodyLimit
        self.upload = upload
        self.truncatesBody = truncatesBody
        self.stopsAfterHeaders = stopsAfterHeaders
    }

    var uploadSize: Int { upload.count }

    static func from(_ context: UnsafeMutableRawPointer?) -> CurlTransfer {
        // libcurl hands back exactly the pointer `CurlEasyHandle.install` gave it.
        Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue()
    }

    /// Write callback: keeps the chunk; past the limit, returns 0 (libcurl then aborts) or,
    /// when truncating, keeps what fits and drops the rest.
    func receiveBody(_ bytes: UnsafeMutablePointer<CChar>?, count: Int) -> Int {
        guard let bytes, count > 0 else { return 0 }
        guard body.count + count <= bodyLimit else {
            guard truncatesBody else {
                exceededLimit = true
                return 0
            }
            body.append(UnsafeRawPointer(bytes).assumingMemoryBound(to: UInt8.self), count: max(0, bodyLimit - body.count))
            return count
        }
        body.append(UnsafeRawPointer(bytes).assumingMemoryBound(to: UInt8.self), count: count)
        return count
    }

    /// Header callback: one whole line per call, the status line starting a new response.
    func receiveHeader(_ bytes: UnsafeMutablePointer<CChar>?, count: Int) -> Int {
        guard let bytes, count > 0 else { return 0 }
        headerBytes += count
        guard headerBytes <= Self.headerLimit else {
            exceededLimit = true
            return 0
        }
        let buffer = UnsafeRawBufferPointer(start: bytes, count: count)
        let line = String(decoding: buffer, as: UTF8.self).trimmingCharacters(in: .newlines)
        if line.hasPrefix("HTTP/") {
            headerLines.removeAll()
            headerBytes = count
        }
        // The blank line ending a final response's headers (not a 1xx's).
        if stopsAfterHeaders, line.isEmpty, let status = headerLines.first?.split(separator: " ").dropFirst().first,
            !status.hasPrefix("1")
        {
            stoppedAfterHeaders = true
            return 0
        }
        headerLines.append(line)
        return count
    }

    /// Read callback: copies the next part of the upload; 0 marks its end.
    func sendUpload(into buffer: UnsafeMutablePointer<CChar>?, capacity: Int) -> Int {
        guard let buffer else { return 0 }
        let count = min(capacity, upload.count - uploadOffset)
        guard count > 0 else { return 0 }
        UnsafeMutableRawBufferPointer(start: buffer, count: count)
            .copyBytes(from: upload[uploadOffset..<uploadOffset + count])
        uploadOffset += count
        return count
    }
}

/// Set by a task's cancellation handler on any thread, read by libcurl's progress
/// callback on the transfer's thread.
final class CancellationFlag: Sendable {
    private let state = Atomic<Bool>(false)

    func cancel() { state.store(true, ordering: .relaxed) }

    var isCancelled: Bool { state.load(ordering: .relaxed) }
}
