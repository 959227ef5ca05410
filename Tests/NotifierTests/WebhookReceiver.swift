import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// A webhook receiver on 127.0.0.1, shared by the tests of this process and never
/// stopped (as the CurlClient tests' echo server). It checks every delivery's signature
/// itself — its own parsing of `Tally-Signature` and its own HMAC over the raw body, with
/// a 5-minute tolerance — and answers as each hook path was told: fail the first N
/// attempts, or fail until it recovers.
struct WebhookReceiver: Sendable {
    let baseURL: String
    let inbox: Inbox

    /// One accepted delivery.
    struct Delivery: Sendable {
        let eventID: String
        let body: Data
        let at: ContinuousClock.Instant
    }

    actor Inbox {
        struct Hook {
            var secret: String
            var failuresLeft: Int
            var failing: Bool
            /// Answers only after `hangSeconds`, long past the Notifier's 10 s timeout.
            var hanging = false
        }

        /// The status answered after a hang.
        static let hangs = -1
        static let hangSeconds = 30

        private var hooks: [String: Hook] = [:]
        private(set) var accepted: [String: [Delivery]] = [:]
        private(set) var attempts: [String: [ContinuousClock.Instant]] = [:]
        private(set) var badSignatures = 0

        func expect(_ name: String, secret: String, failFirst: Int = 0, failing: Bool = false, hanging: Bool = false) {
            hooks[name] = Hook(secret: secret, failuresLeft: failFirst, failing: failing, hanging: hanging)
        }

        func recover(_ name: String) { hooks[name]?.failing = false }

        func deliveries(_ name: String) -> [Delivery] { accepted[name] ?? [] }
        func attemptTimes(_ name: String) -> [ContinuousClock.Instant] { attempts[name] ?? [] }

        /// The status to answer.
        func receive(_ name: String, body: Data, signature: String?, eventID: String?) -> Int {
            guard var hook = hooks[name] else { return 404 }
            attempts[name, default: []].append(.now)
            guard let signature, Self.verify(signature, body: body, secret: hook.secret) else {
                badSignatures += 1
                return 400
            }
            defer { hooks[name] = hook }
            if hook.hanging { return Self.hangs }
            if hook.failing { return 503 }
            if hook.failuresLeft > 0 {
                hook.failuresLeft -= 1
                return 500
            }
            accepted[name, default: []].append(Delivery(eventID: eventID ?? "", body: body, at: .now))
            return 200
        }

        /// `t=<unix>,v1=<hex>[,v1=<hex>]`: any v1 that matches, in constant time, within 5 minutes.
        static func verify(_ header: String, body: Data, secret: String) -> Bool {
            var timestamp: String?
            var signatures: [String] = []
            for item in header.split(separator: ",") {
                let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { continue }
                if pair[0] == "t" { timestamp = pair[1] } else if pair[0] == "v1" { signatures.append(pair[1]) }
            }
            guard let timestamp, let seconds = Double(timestamp), abs(Date().timeIntervalSince1970 - seconds) < 300 else { return false }
            let expected = Array(
                HMAC<SHA256>.authenticationCode(
                    for: Data(timestamp.utf8) + Data(".".utf8) + body, using: SymmetricKey(data: Data(secret.utf8))))
            return signatures.contains { hex in
                let bytes = stride(from: 0, to: hex.count - 1, by: 2).compactMap { offset -> UInt8? in
                    let start = hex.index(hex.startIndex, offsetBy: offset)
                    return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)
                }
                guard bytes.count == expected.count else { return false }
                return zip(bytes, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
            }
        }
    }

    static func shared() async throws -> WebhookReceiver { try await server.value }

    private static let server = Task<WebhookReceiver, any Error> {
        let inbox = Inbox()
        let (ports, boundPort) = AsyncStream.makeStream(of: Int.self)
        let router = Router()
        router.post("hooks/:name") { request, context -> Response in
            let name = context.parameters.get("name") ?? ""
            let body = Data(try await request.body.collect(upTo: 1 << 20).readableBytesView)
            let status = await inbox.receive(
                name, body: body, signature: request.headers[HTTPField.Name("Tally-Signature")!],
                eventID: request.headers[HTTPField.Name("Tally-Event-Id")!])
            guard status != Inbox.hangs else {
                try? await Task.sleep(for: .seconds(Inbox.hangSeconds))
                return Response(status: .ok)
            }
            return Response(status: .init(code: status))
        }
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "webhook-receiver"),
            onServerRunning: { channel in
                boundPort.yield(channel.localAddress?.port ?? 0)
                boundPort.finish()
            })
        Task {
            defer { boundPort.finish() }
            try await application.runService(gracefulShutdownSignals: [])
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw ReceiverError.didNotStart }
        return WebhookReceiver(baseURL: "http://127.0.0.1:\(port)", inbox: inbox)
    }

    enum ReceiverError: Error { case didNotStart }
}
