import CurlClient
import Foundation
import Testing

@Suite("HTTP client against a real local server")
struct HTTPClientTests {
    @Test("GET round trip: status, request headers as sent, response headers looked up case-insensitively")
    func getRoundTrip() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let response = try await client.send(
                .init(url: server.baseURL + "/echo", headers: ["X-Tally-Trace": "trace-1", "Accept": "application/json"])
            )
            #expect(response.status == 200)
            #expect(response.isSuccess)
            #expect(response.headers["content-type"] == "application/json")
            #expect(response.headers["CONTENT-TYPE"] == "application/json")
            let echoed = try JSONDecoder().decode(EchoedRequest.self, from: response.body)
            #expect(echoed.method == "GET")
            #expect(echoed.header("x-tally-trace") == "trace-1")
            #expect(echoed.header("accept") == "application/json")
            #expect(echoed.body.isEmpty)
        }
    }

    @Test("POST round trip: a 1.5 MiB binary body arrives intact, without Expect: 100-continue")
    func postRoundTrip() async throws {
        let client = try HTTPClient()
        let body = EchoServer.pattern(count: 1_572_864)
        try await EchoServer.run { server in
            let response = try await client.send(
                .init(method: .post, url: server.baseURL + "/echo", headers: ["Content-Type": "application/octet-stream"], body: body)
            )
            #expect(response.status == 200)
            let echoed = try JSONDecoder().decode(EchoedRequest.self, from: response.body)
            #expect(echoed.method == "POST")
            #expect(echoed.body == body)
            #expect(echoed.header("content-type") == "application/octet-stream")
            #expect(echoed.header("content-length") == "1572864")
            #expect(echoed.header("expect") == nil)
        }
    }

    @Test("a body sent without a Content-Type carries none (not libcurl's form type)")
    func noImplicitContentType() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let response = try await client.send(.init(method: .post, url: server.baseURL + "/echo", body: Data("{}".utf8)))
            let echoed = try JSONDecoder().decode(EchoedRequest.self, from: response.body)
            #expect(echoed.header("content-type") == nil)
            #expect(echoed.body == Data("{}".utf8))
        }
    }

    @Test("PUT, PATCH and DELETE reach the server with their method", arguments: [HTTPClient.Method.put, .patch, .delete])
    func otherMethods(_ method: HTTPClient.Method) async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let response = try await client.send(.init(method: method, url: server.baseURL + "/echo"))
            let echoed = try JSONDecoder().decode(EchoedRequest.self, from: response.body)
            #expect(echoed.method == method.rawValue)
        }
    }

    @Test("HEAD returns the status and headers with no body")
    func head() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let response = try await client.send(.init(method: .head, url: server.baseURL + "/echo"))
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "application/json")
            #expect(response.body.isEmpty)
        }
    }

    @Test("4xx and 5xx statuses are responses, not errors", arguments: [201, 404, 409, 500, 503])
    func statuses(_ status: Int) async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let response = try await client.send(.init(url: server.baseURL + "/echo?status=\(status)"))
            #expect(response.status == status)
            #expect(response.isSuccess == (status < 300))
            #expect(try JSONDecoder().decode(EchoedRequest.self, from: response.body).method == "GET")
        }
    }

    @Test("one client sends many requests in a row and from concurrent tasks")
    func reuse() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        try await client.send(.init(url: server.baseURL + "/echo?status=\(200 + index)")).status
                    }
                }
                var statuses: Set<Int> = []
                for try await status in group { statuses.insert(status) }
                #expect(statuses == Set(200..<220))
            }
        }
    }

    @Test("a client reuses its connection; another client opens its own")
    func connectionReuse() async throws {
        let client = try HTTPClient()
        let other = try HTTPClient()
        try await EchoServer.run { server in
            func clientPort(_ client: HTTPClient) async throws -> Int {
                let response = try await client.send(.init(url: server.baseURL + "/echo"))
                return try JSONDecoder().decode(EchoedRequest.self, from: response.body).clientPort
            }
            let first = try await clientPort(client)
            #expect(first > 0)
            #expect(try await clientPort(client) == first)
            #expect(try await clientPort(client) == first)
            #expect(try await clientPort(other) != first)
        }
    }

    @Test("redirects are reported, not followed, unless asked")
    func redirects() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let reported = try await client.send(.init(url: server.baseURL + "/redirect"))
            #expect(reported.status == 302)
            #expect(reported.headers["Location"] == "/echo")
            let followed = try await client.send(.init(url: server.baseURL + "/redirect", followsRedirects: true))
            #expect(followed.status == 200)
            #expect(try JSONDecoder().decode(EchoedRequest.self, from: followed.body).method == "GET")
        }
    }

    @Test("a server slower than the timeout gives a timeout error")
    func timeout() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let error = await #expect(throws: CurlError.self) {
                try await client.send(.init(url: server.baseURL + "/slow", timeout: .milliseconds(300)))
            }
            #expect(error?.code == .timeout)
            #expect(error?.curlCode == 28)
            #expect(error?.isTransient == true)
        }
    }

    @Test("a client that does not read bodies answers with the status once the headers are in; one that does times out on a slow body")
    func statusOnly() async throws {
        let statusOnly = try HTTPClient(configuration: .init(readsBody: false))
        try await EchoServer.run { server in
            let response = try await statusOnly.send(.init(url: server.baseURL + "/trickle", timeout: .seconds(5)))
            #expect(response.status == 200 && response.body.isEmpty)
            #expect(response.headers["transfer-encoding"] == "chunked")
            // Any final status is the answer; the client is still usable after a transfer ended early.
            #expect(try await statusOnly.send(.init(url: server.baseURL + "/echo?status=503", timeout: .seconds(5))).status == 503)
            let reading = try HTTPClient()
            let error = await #expect(throws: CurlError.self) {
                try await reading.send(.init(url: server.baseURL + "/trickle", timeout: .milliseconds(500)))
            }
            #expect(error?.code == .timeout)
        }
    }

    @Test("cancelling the calling task aborts a transfer in progress")
    func cancellation() async throws {
        let client = try HTTPClient()
        try await EchoServer.run { server in
            let outcome = try await withThrowingTaskGroup(of: CurlError.Code?.self) { group in
                group.addTask {
                    do throws(CurlError) {
                        _ = try await client.send(.init(url: server.baseURL + "/slow", timeout: .seconds(20)))
                        return nil
                    } catch {
                        return error.code
                    }
                }
                // Cancel only once the server holds the request, so the transfer is in progress.
                var arrivals = server.arrivals.makeAsyncIterator()
                _ = await arrivals.next()
                group.cancelAll()
                return try await group.next() ?? nil
            }
            #expect(outcome == .cancelled)
        }
    }

    @Test("connection refused is couldNotConnect, and the error shows no header values")
    func connectionRefused() async throws {
        let client = try HTTPClient()
        let refusing = try RefusingPort()
        let error = await #expect(throws: CurlError.self) {
            try await client.send(
                .init(url: "http://127.0.0.1:\(refusing.port)/v1/invoices", headers: ["Authorization": "Bearer sk_test_secret123"])
            )
        }
        #expect(error?.code == .couldNotConnect)
        #expect(error?.isTransient == true)
        let texts = [error.map { String(describing: $0) }, error.map { String(reflecting: $0) }].compactMap { $0 }
        #expect(texts.count == 2)
        for text in texts {
            #expect(!text.contains("sk_test_secret123"))
        }
    }

    @Test("TLS to a server that does not speak it is a tls error; a configured CA bundle is used")
    func tlsFailure() async throws {
        let client = try HTTPClient()
        let missingBundle = try HTTPClient(configuration: .init(caBundlePath: "/nonexistent/tally-ca.pem"))
        try await EchoServer.run { server in
            let url = server.baseURL.replacingOccurrences(of: "http://", with: "https://") + "/echo"
            // The timeouts only guard against a hang: the server answers at once, but a
            // loaded machine can take seconds to schedule it, and a timeout is not a tls error.
            let handshake = await #expect(throws: CurlError.self) {
                try await client.send(.init(url: url, timeout: .seconds(120)))
            }
            #expect(handshake?.code == .tls)
            #expect(handshake?.curlCode == 35)
            let bundle = await #expect(throws: CurlError.self) {
                try await missingBundle.send(.init(url: url, timeout: .seconds(120)))
            }
            #expect(bundle?.code == .tls)
            #expect(bundle?.curlCode == 77)
        }
    }

    @Test("a body up to the limit is accepted; one byte more is rejected, with or without Content-Length")
    func responseLimit() async throws {
        let limit = 64 * 1024
        let client = try HTTPClient(configuration: .init(maxResponseBytes: limit))
        try await EchoServer.run { server in
            let exact = try await client.send(.init(url: server.baseURL + "/bytes/\(limit)"))
            #expect(exact.body == EchoServer.pattern(count: limit))
            for path in ["/bytes/\(limit + 1)", "/stream/\(limit * 4)"] {
                let error = await #expect(throws: CurlError.self, "\(path)") {
                    try await client.send(.init(url: server.baseURL + path))
                }
                #expect(error?.code == .responseTooLarge, "\(path)")
            }
            // The client is still usable after an aborted transfer.
            #expect(try await client.send(.init(url: server.baseURL + "/echo")).status == 200)
        }
    }

    @Test("malformed requests are refused before anything is sent")
    func invalidRequests() async throws {
        let client = try HTTPClient()
        let requests: [HTTPClient.Request] = [
            .init(url: "http://127.0.0.1:9/echo", headers: ["X-Injected": "a\r\nAuthorization: Bearer x"]),
            .init(url: "http://127.0.0.1:9/echo", headers: ["Bad Name": "x"]),
            .init(method: .init(rawValue: "GET /other HTTP/1.1\r\n"), url: "http://127.0.0.1:9/echo"),
            .init(url: "http://127.0.0.1:9/echo", body: Data("x".utf8)),
            .init(url: "file:///etc/passwd"),
            .init(url: "not a url"),
        ]
        for request in requests {
            let error = await #expect(throws: CurlError.self, "\(request.url)") { try await client.send(request) }
            #expect(error?.code == .invalidRequest, "\(request.url)")
            #expect(error?.isTransient == false)
        }
    }
}
