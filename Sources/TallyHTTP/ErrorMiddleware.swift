import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// Gives every failure SPEC §4's JSON error shape and an `x-request-id` header:
/// `APIError`s pass through, Hummingbird's own HTTP errors are translated, and
/// anything else is logged with the request id and answered 500 (or 503 when a
/// backing service is unavailable) without leaking internals.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let isUnavailable: @Sendable (any Error) -> Bool

    /// `isUnavailable` tells which errors mean "a dependency is down" (answered 503).
    public init(isUnavailable: @escaping @Sendable (any Error) -> Bool = { _ in false }) {
        self.isUnavailable = isUnavailable
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            var response = try await next(request, context)
            response.headers[.requestID] = context.id
            return response
        } catch let error as APIError {
            throw error.withRequestID(context.id)
        } catch let error as HTTPError {
            throw translate(error, limit: context.maxUploadSize).withRequestID(context.id)
        } catch let error as NIOTooManyBytesError {
            // A body collected past its limit anywhere (a middleware, a form): 413, not a
            // logged 500 that anyone could fill the error log with.
            throw APIError.tooLarge(limit: error.maxBytes ?? context.maxUploadSize).withRequestID(context.id)
        } catch {
            if isUnavailable(error) {
                context.logger.warning("backing service unavailable", metadata: ["error": "\(error)"])
                throw APIError.unavailable.withRequestID(context.id)
            }
            context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            throw APIError.internalError(requestID: context.id).withRequestID(context.id)
        }
    }

    private func translate(_ error: HTTPError, limit: Int) -> APIError {
        switch error.status {
        case .contentTooLarge: .tooLarge(limit: limit)
        case .notFound: APIError(.notFound, code: "NOT_FOUND", message: error.body ?? "No such route.")
        case .methodNotAllowed: APIError(.methodNotAllowed, code: "METHOD_NOT_ALLOWED", message: "Method not allowed.")
        default:
            APIError(error.status, code: "HTTP_\(error.status.code)", message: error.body ?? error.status.reasonPhrase)
        }
    }
}
