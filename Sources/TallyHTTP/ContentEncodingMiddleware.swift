import Foundation
import HTTPTypes
import Hummingbird

/// Request bodies are read as sent: a `Content-Encoding` other than `identity` is a 415
/// naming the header, with `Accept-Encoding: identity` (RFC 9110 §15.5.16). A gzip body was
/// refused as "not valid UTF-8", which sent its sender looking in the wrong place, and a
/// coding that left the bytes readable (`br` on a plain body) was taken as plain.
public struct ContentEncodingMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let codings = request.headers[values: .contentEncoding]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty }
        if let coding = codings.first(where: { $0 != "identity" }) {
            var refusal = APIError(
                .unsupportedMediaType, code: "UNSUPPORTED_CONTENT_ENCODING",
                message: "Content-Encoding \(coding.prefix(40)) is not accepted: send the body uncompressed (identity)",
                field: "Content-Encoding")
            refusal.headers[.acceptEncoding] = "identity"
            throw refusal
        }
        return try await next(request, context)
    }
}
