import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TallyStore

/// Resolves `Authorization: Bearer <token>` into the request's principal, answering
/// 401 when it is missing or unknown. Paths in `publicPaths` (health checks) and under
/// `publicPrefixes` (pages with their own sign-in) pass.
public struct AuthenticationMiddleware<Context: AuthenticatedRequestContext>: RouterMiddleware {
    let authenticator: APIKeyAuthenticator
    let publicPaths: Set<String>
    let publicPrefixes: [String]

    public init(authenticator: APIKeyAuthenticator, publicPaths: Set<String> = ["/healthz", "/readyz"], publicPrefixes: [String] = []) {
        self.authenticator = authenticator
        self.publicPaths = publicPaths
        self.publicPrefixes = publicPrefixes
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        if publicPaths.contains(path) || publicPrefixes.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) {
            return try await next(request, context)
        }
        guard let token = Self.bearerToken(request) else {
            authenticator.recordMissingToken()
            throw APIError.unauthenticated
        }
        guard let principal = try await authenticator.principal(forToken: token) else {
            throw APIError.invalidAPIKey
        }
        var context = context
        context.principal = principal
        switch principal {
        case .admin: context.logger[metadataKey: "auth.principal"] = "admin"
        case .tenant(let id): context.logger[metadataKey: "tenant.id"] = "\(id)"
        }
        return try await next(request, context)
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
