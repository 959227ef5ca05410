import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Answers `Expect: 100-continue` with `100 Continue` as the request's head arrives, so a
/// client that asks (curl does for bodies over 1 MiB, and for any body when told to) sends
/// its body at once instead of after its own timeout (curl waits 1 s: a 1.8 MB batch took
/// 1.6 s, and one with a 5 s timeout took 5 s). The limits still apply to what follows: an
/// oversized body or a bad key is answered as without the header.
///
/// It sits before NIO's HTTP/1 to HTTP types codec, where the request's version is known:
/// an HTTP/1.0 request's expectation is ignored (RFC 9110 §10.1.1; an HTTP/1.0 client
/// cannot read an interim answer). And the interim answer never goes out in the middle of
/// another response: a request read while answers to earlier pipelined requests are still
/// being written gets its `100 Continue` once those are written, just before its own turn;
/// none behind an answer saying `Connection: close`, after which the connection is closed.
final class ExpectContinueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests whose heads were read, and responses whose ends were written, on this connection.
    private var requests = 0
    private var responses = 0
    /// Pipelined requests (by number) owed a `100 Continue` once the responses before them are written.
    private var owed: [Int: HTTPVersion] = [:]
    /// A response written so far closes the connection.
    private var closing = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        requests += 1
        let expectation = head.headers[canonicalForm: "expect"]
        guard (head.version.major, head.version.minor) >= (1, 1), expectation.contains(where: { $0.lowercased() == "100-continue" }) else {
            context.fireChannelRead(data)
            return
        }
        // Answered here: the application sees a request without the expectation.
        head.headers.remove(name: "expect")
        if closing {
            // Not read: the connection closes after an earlier answer.
        } else if responses == requests - 1 {
            sendContinue(context: context, version: head.version)
        } else {
            owed[requests] = head.version
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200 && !head.isKeepAlive:
            // This answer closes the connection: no request after it is read, so none is
            // invited to send its body.
            closing = true
            owed.removeAll()
            context.write(data, promise: promise)
        case .end where closing:
            responses += 1
            // Closed once written, as the answer said (RFC 9112 §9.6): Hummingbird closes
            // only when the request asked, and went on reading pipelined requests.
            let written = context.eventLoop.makePromise(of: Void.self)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
            promise.map { written.futureResult.cascade(to: $0) }
            context.write(data, promise: written)
        case .end:
            responses += 1
            context.write(data, promise: promise)
            if let version = owed.removeValue(forKey: responses + 1) {
                sendContinue(context: context, version: version)
            }
        default:
            context.write(data, promise: promise)
        }
    }

    private func sendContinue(context: ChannelHandlerContext, version: HTTPVersion) {
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .continue))), promise: nil)
    }
}

/// Put among Hummingbird's additional channel handlers (which come after the codec), it
/// adds `ExpectContinueHandler` before the codec, then only passes requests on.
final class ExpectContinueInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart

    func handlerAdded(context: ChannelHandlerContext) {
        do {
            let pipeline = context.pipeline.syncOperations
            let codec = try pipeline.handler(type: HTTP1ToHTTPServerCodec.self)
            try pipeline.addHandler(ExpectContinueHandler(), position: .before(codec))
        } catch {
            // Hummingbird's HTTP/1 pipeline always has the codec: without it every test fails here.
            assertionFailure("ExpectContinueHandler not installed: \(error)")
            context.fireErrorCaught(error)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 as Tally's APIs serve it: `Expect: 100-continue` answered (`ExpectContinueHandler`).
    public static var tally: HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueInstaller()]))
    }
}
