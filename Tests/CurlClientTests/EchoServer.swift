import Foundation
import Hummingbird

/// What the `/echo` route received, sent back to the client as JSON.
struct EchoedRequest: Codable {
    let method: String
    /// `[name, value]` pairs in the order received; names as the client spelled them.
    let headers: [[String]]
    let body: Data
    /// The client's TCP port: equal across requests exactly when they shared a connection.
    let clientPort: Int

    /// The first value of `name`, case-insensitively.
    func header(_ name: String) -> String? {
        headers.first { $0.first?.lowercased() == name.lowercased() }?.last
    }
}

/// The request context of the echo server: the basic one plus the client's port.
struct EchoContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let clientPort: Int

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientPort = source.channel.remoteAddress?.port ?? 0
    }
}

/// A real HTTP server on 127.0.0.1 and an ephemeral port, shared by every test in
/// the process and never stopped: stopping a Hummingbird server while a client's
/// keep-alive connection is being accepted crashed the test process (NIOAsyncWriter
/// deinit without finish), so the server simply lives as long as the tests do.
///
/// Routes: `/echo` (every method; `?status=N` picks the status) answers with what it
/// received; `/slow` announces the request on `arrivals` and answers only after 30 s;
/// `/bytes/N` answers N bytes with a Content-Length; `/stream/N` streams N bytes chunked;
/// `/redirect` answers 302 to `/echo`; `/trickle` answers 200 and one byte of its body,
/// the rest never.
struct EchoServer: Sendable {
    let baseURL: String
    /// The path of each `/slow` request, once the server holds it (one test reads it).
    let arrivals: AsyncStream<String>

    /// Runs `body` with the shared server, starting it the first time.
    static func run<T: Sendable>(_ body: (EchoServer) async throws -> T) async throws -> T {
        try await body(shared.value)
    }

    private static let shared = Task<EchoServer, any Error> {
        let (arrivals, arrival) = AsyncStream.makeStream(of: String.self)
        let (ports, boundPort) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            router: router(announcing: arrival),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "curl-client-tests"),
            onServerRunning: { channel in
                boundPort.yield(channel.localAddress?.port ?? 0)
                boundPort.finish()
            }
        )
        Task {
            // If the server fails to start, end the port stream so the tests fail instead of hanging.
            defer { boundPort.finish() }
            try await application.runService(gracefulShutdownSignals: [])
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw EchoServerError.didNotStart }
        return EchoServer(baseURL: "http://127.0.0.1:\(port)", arrivals: arrivals)
    }

    enum EchoServerError: Error { case didNotStart }

    /// The same bytes `/bytes/N` and `/stream/N` send: a repeating 0…250 pattern.
    static func pattern(count: Int) -> Data {
        Data((0..<count).map { UInt8($0 % 251) })
    }

    private static func router(announcing arrival: AsyncStream<String>.Continuation) -> Router<EchoContext> {
        let router = Router(context: EchoContext.self)
        router.get("echo", use: echo)
        router.head("echo", use: echo)
        router.post("echo", use: echo)
        router.put("echo", use: echo)
        router.patch("echo", use: echo)
        router.delete("echo", use: echo)
        router.get("slow") { request, _ -> String in
            arrival.yield(request.uri.path)
            try await Task.sleep(for: .seconds(30))
            return "too late"
        }
        router.get("bytes/:count") { _, context -> Response in
            let count = try context.parameters.require("count", as: Int.self)
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: pattern(count: count))))
        }
        router.get("stream/:count") { _, context -> Response in
            let bytes = pattern(count: try context.parameters.require("count", as: Int.self))
            return Response(
                status: .ok,
                body: ResponseBody { writer in
                    for start in stride(from: 0, to: bytes.count, by: 16 * 1024) {
                        try await writer.write(ByteBuffer(bytes: bytes[start..<min(start + 16 * 1024, bytes.count)]))
                    }
                    try await writer.finish(nil)
                })
        }
        router.get("trickle") { _, _ -> Response in
            Response(
                status: .ok,
                body: ResponseBody { writer in
                    try await writer.write(ByteBuffer(bytes: [0x7B]))
                    try await Task.sleep(for: .seconds(30))
                    try await writer.finish(nil)
                })
        }
        router.get("redirect") { _, _ -> Response in
            Response(status: .found, headers: [.location: "/echo"])
        }
        return router
    }

    @Sendable private static func echo(_ request: Request, _ context: EchoContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 4 << 20)
        let echoed = EchoedRequest(
            method: request.method.rawValue,
            headers: request.headers.map { [$0.name.rawName, $0.value] },
            body: Data(body.readableBytesView),
            clientPort: context.clientPort
        )
        let status = request.uri.queryParameters.get("status", as: Int.self) ?? 200
        return Response(
            status: .init(code: status),
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(echoed)))
        )
    }
}
