import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with `100 Continue` as the request's head arrives, so a
/// client that asks (curl does for bodies over 1 MiB, and for any body when told to) sends
/// its body at once instead of after its own timeout (curl waits 1 s: a 1.8 MB batch took
/// 1.6 s, and one with a 5 s timeout took 5 s). The limits still apply to what follows: an
/// oversized body or a bad key is answered as without the header. Sits in the HTTP/1
/// pipeline between the codec and Hummingbird's handling (`HTTPServerBuilder.tally`).
final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data),
            let expectation = head.headerFields[.expect], expectation.lowercased() == "100-continue"
        else {
            context.fireChannelRead(data)
            return
        }
        // Answered here: the application sees a request without the expectation.
        head.headerFields[.expect] = nil
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 as Tally's APIs serve it: `Expect: 100-continue` answered (`ExpectContinueHandler`).
    public static var tally: HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler()]))
    }
}
