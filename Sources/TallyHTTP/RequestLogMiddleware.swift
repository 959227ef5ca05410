import Foundation
import Hummingbird
import Logging

/// Logs each request as Hummingbird's `LogRequestsMiddleware` does ("Request",
/// `hb.request.method`, `hb.request.path`), but with the value of any query parameter
/// whose name suggests a credential (`token`, `key`, `secret`, `password`, `auth`,
/// `signature`) written `***`: a client that put the admin token in the query string
/// (`?access_token=…`, refused with 401) had it written to the log in clear (SPEC §6).
public struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let level: Logger.Level

    public init(_ level: Logger.Level) {
        self.level = level
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        context.logger.log(
            level: level, "Request",
            metadata: [
                "hb.request.path": .string(RequestLog.loggable(path: request.uri.path, query: request.uri.query)),
                "hb.request.method": .string(request.method.rawValue),
            ])
        return try await next(request, context)
    }
}

/// A request's path and query as logged: credential-like parameters' values replaced.
enum RequestLog {
    static let secretWords = ["token", "key", "secret", "password", "auth", "signature"]

    static func loggable(path: String, query: String?) -> String {
        guard let query, !query.isEmpty else { return path }
        let parts = query.split(separator: "&", omittingEmptySubsequences: false).map { part -> String in
            let raw = String(part.prefix { $0 != "=" })
            let name = (raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? raw).lowercased()
            guard part.contains("="), secretWords.contains(where: { name.contains($0) }) else { return String(part) }
            return part.prefix { $0 != "=" } + "=***"
        }
        return path + "?" + parts.joined(separator: "&")
    }
}
