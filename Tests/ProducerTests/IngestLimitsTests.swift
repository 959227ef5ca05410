import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Metering
import NIOCore
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Producer

#if canImport(Glibc)
    import Glibc
#endif

/// What a hostile client can send the ingest API: too many events, a flood of
/// problems, tokens that are not keys, a body it writes whole before reading.
@Suite("Ingest service: limits against hostile clients")
struct IngestLimitsTests {
    let now = TestClock.now()

    func event(_ id: String, quantity: String = "1") -> String {
        #"{"id": "\#(id)", "type": "api_calls", "quantity": \#(quantity), "time": "\#(RFC3339.format(now.addingTimeInterval(-60)))"}"#
    }

    func headers(_ token: String?, contentType: String = "application/json") -> HTTPFields {
        var fields: HTTPFields = [.contentType: contentType]
        if let token { fields[.authorization] = "Bearer \(token)" }
        return fields
    }

    @Test("more than 10,000 events is 413 naming the limit, as an array and as NDJSON; a refusal lists the first 100 problems and counts them all")
    func eventCountAndProblemLimits() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            let tiny = (0...IngestBody.maximumEvents).map { event("e\($0)") }
            for (body, contentType) in [
                ("[" + tiny.joined(separator: ",") + "]", "application/json"),
                (tiny.joined(separator: "\n"), "application/x-ndjson"),
            ] {
                try await client.execute(
                    uri: "/v1/events", method: .post, headers: headers(fixture.apiKey, contentType: contentType), body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .contentTooLarge, "\(contentType)")
                    #expect(response.errorCode == "TOO_MANY_EVENTS", "\(contentType)")
                    let message = (response.json?["error"] as? [String: Any])?["message"] as? String ?? ""
                    #expect(message.contains("10000"), "\(message)")
                }
            }
            // Exactly the limit is accepted.
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.apiKey),
                body: ByteBuffer(string: "[" + tiny.dropLast().joined(separator: ",") + "]")
            ) { response in
                #expect(response.status == .accepted)
            }
            // 250 invalid events: 100 problems listed, all 250 counted.
            let invalid = (0..<250).map { event("bad\($0)", quantity: "-1") }
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.apiKey),
                body: ByteBuffer(string: "[" + invalid.joined(separator: ",") + "]")
            ) { response in
                #expect(response.status == .badRequest)
                let error = response.json?["error"] as? [String: Any]
                #expect((error?["details"] as? [Any])?.count == 100)
                let message = error?["message"] as? String ?? ""
                #expect(message.contains("250 of 250 events are invalid"), "\(message)")
                #expect(message.contains("first 100 of 250 problems"), "\(message)")
            }
        }
        let arrived = try await fixture.receivedEvents(expected: IngestBody.maximumEvents)
        #expect(arrived.ids.count == IngestBody.maximumEvents)
        try await fixture.tearDown()
    }

    @Test("every 401 is counted in /metrics by reason; a token that cannot be a key is refused without a lookup")
    func unauthorizedCounted() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            let unknown = "tally_" + String(repeating: "ab", count: 32)
            for token in [nil, nil, "garbage", "tally_XYZ", "Tally_" + String(repeating: "a", count: 64), unknown, unknown] as [String?] {
                try await client.execute(uri: "/v1/events", method: .post, headers: headers(token), body: ByteBuffer(string: event("a"))) {
                    response in
                    #expect(response.status == .unauthorized)
                }
            }
            let metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(metrics.contains(#"tally_http_unauthorized_total{reason="missing_token"} 2"#), "\(metrics)")
            #expect(metrics.contains(#"tally_http_unauthorized_total{reason="malformed_token"} 3"#), "\(metrics)")
            #expect(metrics.contains(#"tally_http_unauthorized_total{reason="unknown_key"} 2"#), "\(metrics)")
            // The unknown key was looked up once (then cached); malformed ones never.
            #expect(metrics.contains("tally_http_api_key_lookups_total 1\n"), "\(metrics)")
        }
        try await fixture.tearDown()
    }

    @Test("a flood of unknown keys evicts the least recently used answers, never a key in use")
    func leastRecentlyUsedEviction() async throws {
        let lookups = LookupLog()
        let active = APIKey.generate().secret
        let tenant = UUID()
        let authenticator = APIKeyAuthenticator(adminToken: "admin", cacheLifetime: .seconds(3600), cacheLimit: 10) { key in
            lookups.record(key.secret)
            return key.secret == active ? tenant : nil
        }
        #expect(try await authenticator.principal(forToken: active) == .tenant(tenant))
        for _ in 0..<200 {
            #expect(try await authenticator.principal(forToken: APIKey.generate().secret) == nil)
            #expect(try await authenticator.principal(forToken: active) == .tenant(tenant))
        }
        // 200 random keys through a cache of 10: the key in use was looked up once.
        #expect(lookups.count(of: active) == 1)
        #expect(lookups.total == 201)
        #expect(authenticator.counters.unknownKey == 200)
    }

    @Test(
        "a spool disk that fills while the broker is unreachable answers 503 with Retry-After, never 500", .enabled(if: SmallFilesystem.isPermitted))
    func spoolDiskFull() async throws {
        let fixture = try await IngestFixture.make()
        let disk = try SmallFilesystem(bytes: 96 << 10)
        try await withCleanup {
            var configuration = fixture.configuration()
            configuration.amqpURL = "amqp://guest:guest@127.0.0.1:\(try TestEnvironment.freePort())/%2F"  // nobody listens
            configuration.spoolDirectory = disk.path + "/spool"
            let app = try await buildApplication(configuration, logger: IngestFixture.logger, clock: { now })
            let statuses = try await app.test(.router) { client in
                var statuses: [HTTPResponse.Status] = []
                for batch in 0..<200 {
                    let body = "[" + (0..<50).map { event("b\(batch)-\($0)") }.joined(separator: ",") + "]"
                    let (status, retryAfter, code) = try await client.execute(
                        uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: ByteBuffer(string: body)
                    ) { ($0.status, $0.headers[.retryAfter], $0.errorCode) }
                    statuses.append(status)
                    if status != .accepted {
                        #expect(status == .serviceUnavailable, "\(code ?? "")")
                        #expect(retryAfter == "5")
                        break
                    }
                }
                return statuses
            }
            #expect(statuses.first == .accepted)
            #expect(statuses.last == .serviceUnavailable, "\(statuses.count) requests, all accepted: the disk never filled")
        } cleanup: {
            disk.unmount()
            try await fixture.tearDown()
        }
    }

    @Test("an instance shutting down answers 503 UNAVAILABLE with Retry-After and accepts nothing; what it accepted before arrives")
    func shuttingDown() async throws {
        let fixture = try await IngestFixture.make()
        try await withCleanup {
            let (app, publisher) = try await buildIngest(fixture.configuration(), logger: IngestFixture.logger, clock: { now })
            let (before, after) = try await app.test(.router) { client in
                let before = try await client.execute(
                    uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: ByteBuffer(string: "[\(event("before"))]")
                ) { $0.status }
                publisher.finish()  // what the graceful-shutdown handler of `producer serve` does
                let after = try await client.execute(
                    uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: ByteBuffer(string: "[\(event("after"))]")
                ) { ($0.status, $0.headers[.retryAfter], $0.errorCode) }
                return (before, after)
            }
            #expect(before == .accepted)
            #expect(after.0 == .serviceUnavailable)
            #expect(after.1 == "5")
            #expect(after.2 == "UNAVAILABLE")
            let received = try await fixture.receivedEvents(expected: 2, quiet: .seconds(3))
            #expect(received.ids == ["before": 1])
        } cleanup: {
            try await fixture.tearDown()
        }
    }

    @Test("Expect: 100-continue is answered with 100 Continue before the body is sent; the body is then counted once")
    func expectContinue() async throws {
        let fixture = try await IngestFixture.make()
        let app = try await fixture.app(now: now)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let key = fixture.apiKey
            let body = "[\(event("expecting"))]"
            let answers = try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<(interim: String, final: String), any Error>) in
                Thread.detachNewThread {
                    continuation.resume(with: Result { try RawHTTP.postExpectingContinue(port: port, key: key, body: body) })
                }
            }
            #expect(answers.interim.hasPrefix("HTTP/1.1 100"), "\(answers.interim)")
            #expect(answers.final.hasPrefix("HTTP/1.1 202"), "\(answers.final.prefix(300))")
        }
        let received = try await fixture.receivedEvents(expected: 1, quiet: .seconds(3))
        #expect(received.ids == ["expecting": 1])
        try await fixture.tearDown()
    }

    @Test(
        "Expect: 100-continue is ignored in HTTP/1.0 (no interim answer), and a pipelined request's 100 Continue comes after the answer before it, never inside it"
    )
    func expectContinueVersionAndPipelining() async throws {
        let fixture = try await IngestFixture.make()
        let app = try await fixture.app(now: now)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let key = fixture.apiKey
            let (old, first, second) = ("[\(event("http10"))]", "[\(event("pipelined-1"))]", "[\(event("pipelined-2"))]")
            let answers = try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<(http10: String, before: String, after: String, closing: String), any Error>) in
                Thread.detachNewThread {
                    continuation.resume(
                        with: Result {
                            let http10 = try RawHTTP.postHTTP10Expecting(port: port, key: key, body: old)
                            let pipelined = try RawHTTP.pipelinedThenExpecting(port: port, key: key, first: first, second: second)
                            let closing = try RawHTTP.oversizedThenExpecting(port: port, key: key)
                            return (http10, pipelined.before, pipelined.after, closing)
                        })
                }
            }
            // HTTP/1.0: only the final answer (an interim one was sent to a client that cannot read it).
            #expect(answers.http10.contains(" 202 "), "\(answers.http10.prefix(300))")
            #expect(!answers.http10.contains(" 100 "), "\(answers.http10.prefix(300))")
            // Pipelined: the first answer whole, then the interim one, then the second answer.
            let parsed = RawHTTP.wholeResponses(answers.before)
            #expect(parsed.statuses == ["202"] && parsed.rest.isEmpty, "before the 100 Continue: \(answers.before)")
            #expect(answers.after.hasPrefix("HTTP/1.1 202"), "\(answers.after.prefix(300))")
            // Behind an answer that closes the connection (413), no request is invited to send its body.
            let closing = RawHTTP.wholeResponses(answers.closing)
            #expect(closing.statuses == ["413"] && closing.rest.isEmpty, "\(answers.closing.prefix(600))")
        }
        let received = try await fixture.receivedEvents(expected: 3, quiet: .seconds(3))
        #expect(received.ids == ["http10": 1, "pipelined-1": 1, "pipelined-2": 1])
        try await fixture.tearDown()
    }

    @Test("an oversized body written whole before reading gets its 413 and the connection closes (Connection: close)")
    func oversizedBodyWrittenWhole() async throws {
        let fixture = try await IngestFixture.make()
        let app = try await fixture.app(now: now)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            // Blocking socket calls on a thread of their own, never on the cooperative pool.
            let key = fixture.apiKey
            let answer = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                Thread.detachNewThread {
                    continuation.resume(with: Result { try RawHTTP.postWholeBody(port: port, key: key, bodyBytes: 40 << 20) })
                }
            }
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
            #expect(answer.contains("PAYLOAD_TOO_LARGE"), "\(answer.prefix(400))")
        }
        try await fixture.tearDown()
    }
}

/// Keys the authenticator looked up, thread-safely.
final class LookupLog: @unchecked Sendable {
    private let lock = NSLock()
    private var secrets: [String] = []

    func record(_ secret: String) { lock.withLock { secrets.append(secret) } }
    func count(of secret: String) -> Int { lock.withLock { secrets.filter { $0 == secret }.count } }
    var total: Int { lock.withLock { secrets.count } }
}

/// A client as Python's urllib behaves: the whole request written before the answer is
/// read, then the answer read to the end of the connection. Blocking sockets with
/// 60-second timeouts: a server that stops reading fails the test instead of hanging it.
enum RawHTTP {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// A POST with `Expect: 100-continue` that sends its body only once the server said
    /// `100 Continue` (read with the 60-second hang guard); returns that interim answer and
    /// the final one.
    static func postExpectingContinue(port: Int, key: String, body: String) throws -> (interim: String, final: String) {
        let fd = try connected(port: port)
        defer { close(fd) }
        let head =
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        try sendAll(fd, Array(head.utf8))
        var interim: [UInt8] = []
        var byte: UInt8 = 0
        while !interim.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
            guard recv(fd, &byte, 1, 0) == 1 else {
                throw Failure(description: "no interim answer to Expect: 100-continue within 60 s: \(String(decoding: interim, as: UTF8.self))")
            }
            interim.append(byte)
        }
        try sendAll(fd, Array(body.utf8))
        return (String(decoding: interim, as: UTF8.self), try readToClose(fd))
    }

    /// An HTTP/1.0 POST with `Expect: 100-continue` and its body at once (an HTTP/1.0
    /// client does not wait for an interim answer); returns everything the server sent.
    static func postHTTP10Expecting(port: Int, key: String, body: String) throws -> String {
        let fd = try connected(port: port)
        defer { close(fd) }
        let request =
            "POST /v1/events HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" + body
        try sendAll(fd, Array(request.utf8))
        return try readToClose(fd)
    }

    /// A whole POST, and pipelined behind it in the same write the head of a second asking
    /// `Expect: 100-continue`; reads until `100 Continue` arrives, sends the second body,
    /// reads to the close. Returns what came before the interim answer and after it.
    static func pipelinedThenExpecting(port: Int, key: String, first: String, second: String) throws -> (before: String, after: String) {
        let fd = try connected(port: port)
        defer { close(fd) }
        let common = "Host: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
        let requests =
            "POST /v1/events HTTP/1.1\r\n\(common)Content-Length: \(first.utf8.count)\r\n\r\n\(first)"
            + "POST /v1/events HTTP/1.1\r\n\(common)Content-Length: \(second.utf8.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        try sendAll(fd, Array(requests.utf8))
        let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
        var received: [UInt8] = []
        var byte: UInt8 = 0
        while !received.suffix(interim.count).elementsEqual(interim) {
            guard recv(fd, &byte, 1, 0) == 1 else {
                throw Failure(description: "no 100 Continue within 60 s: \(String(decoding: received, as: UTF8.self))")
            }
            received.append(byte)
        }
        try sendAll(fd, Array(second.utf8))
        return (String(decoding: received.dropLast(interim.count), as: UTF8.self), try readToClose(fd))
    }

    /// A POST over the body limit (its whole body written; the 413 closes the connection),
    /// and pipelined behind it the head of a second asking `Expect: 100-continue`; returns
    /// everything read until the close.
    static func oversizedThenExpecting(port: Int, key: String) throws -> String {
        let fd = try connected(port: port)
        defer { close(fd) }
        let common = "Host: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
        let size = 9 << 20
        try sendAll(fd, Array("POST /v1/events HTTP/1.1\r\n\(common)Content-Length: \(size)\r\n\r\n".utf8))
        try sendAll(fd, [UInt8](repeating: UInt8(ascii: " "), count: size))
        try sendAll(fd, Array("POST /v1/events HTTP/1.1\r\n\(common)Content-Length: 2\r\nExpect: 100-continue\r\n\r\n".utf8))
        return try readToClose(fd)
    }

    /// The statuses of the whole HTTP/1.1 responses `text` begins with (bodies by
    /// Content-Length or chunked), and what follows them.
    static func wholeResponses(_ text: String) -> (statuses: [String], rest: String) {
        var rest = Substring(text)
        var statuses: [String] = []
        while let headEnd = rest.range(of: "\r\n\r\n") {
            let head = rest[..<headEnd.lowerBound]
            let lines = head.split(separator: "\r\n")
            guard let status = lines.first?.split(separator: " ").dropFirst().first else { break }
            let fields = Dictionary(
                lines.dropFirst().compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }, uniquingKeysWith: { first, _ in first })
            var body = rest[headEnd.upperBound...]
            if let length = fields["content-length"].flatMap({ Int($0) }) {
                guard body.utf8.count >= length else { break }
                body = Substring(body.utf8.dropFirst(length))
            } else if fields["transfer-encoding"]?.lowercased() == "chunked" {
                while let sizeEnd = body.range(of: "\r\n"), let size = Int(body[..<sizeEnd.lowerBound], radix: 16) {
                    let afterSize = body[sizeEnd.upperBound...]
                    guard afterSize.utf8.count >= size + 2 else { return (statuses, String(rest)) }
                    body = Substring(afterSize.utf8.dropFirst(size + 2))
                    if size == 0 { break }
                }
            }
            statuses.append(String(status))
            rest = body
        }
        return (statuses, String(rest))
    }

    private static func connected(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw Failure(description: "connect: errno \(errno)")
        }
        return fd
    }

    static func postWholeBody(port: Int, key: String, bodyBytes: Int) throws -> String {
        let fd = try connected(port: port)
        defer { close(fd) }
        let head =
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(bodyBytes)\r\nConnection: close\r\n\r\n"
        try sendAll(fd, Array(head.utf8))
        let chunk = [UInt8](repeating: UInt8(ascii: " "), count: 1 << 20)
        var sent = 0
        while sent < bodyBytes {
            let part = min(chunk.count, bodyBytes - sent)
            do {
                try sendAll(fd, Array(chunk[0..<part]))
            } catch {
                throw Failure(description: "the server stopped reading after \(sent) of \(bodyBytes) body bytes: \(error)")
            }
            sent += part
        }
        return try readToClose(fd)
    }

    private static func readToClose(_ fd: Int32) throws -> String {
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { break }  // the server closed: the whole answer is here
            guard count > 0 else {
                throw Failure(description: "no end of the answer within 60 s (errno \(errno)): \(String(decoding: response, as: UTF8.self))")
            }
            response += buffer[0..<count]
        }
        return String(decoding: response, as: UTF8.self)
    }

    private static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw Failure(description: "send: errno \(errno)") }
            offset += written
        }
    }
}
