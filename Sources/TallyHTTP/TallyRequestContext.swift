import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TallyStore

/// A request context that carries the principal `AuthenticationMiddleware` found.
public protocol AuthenticatedRequestContext: RequestContext {
    var principal: Principal? { get set }
}

extension AuthenticatedRequestContext {
    /// The principal, or 401 when the route was reached without one.
    public func requirePrincipal() throws -> Principal {
        guard let principal else { throw APIError.unauthenticated }
        return principal
    }

    /// Only the admin token may continue.
    public func requireAdmin() throws {
        guard try requirePrincipal() == .admin else {
            throw APIError.forbidden("Only the admin token may do this; tenant API keys cannot.")
        }
    }
}

/// The per-request context of the billing API: Hummingbird's core storage
/// (logger with request id, route parameters) plus the authenticated principal.
public struct TallyRequestContext: AuthenticatedRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthenticationMiddleware` before any route runs.
    public var principal: Principal?
    /// The peer's IP address (the proxy's, behind one), for the logs of refusals.
    public let clientAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.principal = nil
        self.clientAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies above 1 MiB are refused (SPEC §6: request bodies bounded).
    public var maxUploadSize: Int { 1 << 20 }

    /// Responses use Tally's JSON conventions (sorted keys, RFC 3339 instants in UTC with milliseconds, or microseconds when they have them).
    public var responseEncoder: JSONEncoder { .tally }
}
