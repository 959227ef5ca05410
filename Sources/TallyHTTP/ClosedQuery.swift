import Hummingbird
import UsageEvents

/// The query parameters each operation of an API takes. Any other parameter is a 400
/// naming it (and the parameter it resembles), as Stripe answers one, and so is a parameter
/// given twice: `GET /v1/invoices?tenant=…` (for `tenant_id`) would otherwise list every
/// tenant's invoices to the admin, and `?limit=5&limit=50` would read whichever came first.
///
/// An operation is a method and a route path whose captures are unnamed
/// (`GET /v1/alerts/{}`): the router's `/v1/alerts/{id}` and the OpenAPI document's
/// `/v1/alerts/{alert_id}` are one operation. Routes the rules do not name (the dashboard's
/// pages) are not checked.
public struct QueryParameterRules: Sendable, Equatable {
    /// Operation → the query parameters it takes, in the order they are listed.
    public let operations: [String: [String]]

    public init(_ operations: [String: [String]]) {
        var normalized: [String: [String]] = [:]
        for (operation, names) in operations {
            let parts = operation.split(separator: " ", maxSplits: 1)
            let key = parts.count == 2 ? Self.operation(method: String(parts[0]), path: String(parts[1])) : operation
            var merged = normalized[key] ?? []
            for name in names where !merged.contains(name) { merged.append(name) }
            normalized[key] = merged
        }
        self.operations = normalized
    }

    /// The query parameters of every operation of an OpenAPI 3 document, its path-level
    /// parameters and references to `#/components/parameters/…` included; paths served
    /// elsewhere (with `servers` of their own) are left out.
    public init(openAPI json: String) throws {
        guard case .object(let document) = try JSONParser.parse(Array(json.utf8)),
            case .object(let paths) = document["paths"] ?? .null
        else { throw OpenAPIShapeError(message: "has no paths") }
        var components: [String: JSONValue] = [:]
        if case .object(let parts) = document["components"] ?? .null, case .object(let parameters) = parts["parameters"] ?? .null {
            components = parameters
        }
        func queryNames(_ list: JSONValue?) throws -> [String] {
            guard case .array(let parameters) = list ?? .array([]) else { throw OpenAPIShapeError(message: "has parameters that are not a list") }
            return try parameters.compactMap { parameter in
                var parameter = parameter
                if case .object(let fields) = parameter, case .string(let reference) = fields["$ref"] ?? .null {
                    let name = reference.split(separator: "/").last.map(String.init) ?? ""
                    guard reference.hasPrefix("#/components/parameters/"), let resolved = components[name] else {
                        throw OpenAPIShapeError(message: "refers to a parameter it does not define: \(reference)")
                    }
                    parameter = resolved
                }
                guard case .object(let fields) = parameter, case .string(let location) = fields["in"] ?? .null,
                    case .string(let name) = fields["name"] ?? .null
                else { throw OpenAPIShapeError(message: "has a parameter without in and name") }
                return location == "query" ? name : nil
            }
        }
        let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        var operations: [String: [String]] = [:]
        for (path, item) in paths {
            // A path item with servers of its own is another server's (the ingest API's
            // POST /v1/events in the Billing API's document).
            guard case .object(let item) = item, item["servers"] == nil else { continue }
            let shared = try queryNames(item["parameters"])
            for (method, operation) in item where methods.contains(method) {
                guard case .object(let operation) = operation else { continue }
                operations["\(method.uppercased()) \(path)", default: []] += shared + (try queryNames(operation["parameters"]))
            }
        }
        self.init(operations)
    }

    /// `GET /v1/alerts/{}` for `get` and `/v1/alerts/{alert_id}` (or `v1/alerts/{id}`); a
    /// segment that starts with a capture is one capture (`{invoice_id}.pdf` too).
    public static func operation(method: String, path: String) -> String {
        let parts = path.split(separator: "/").map { $0.hasPrefix("{") || $0.hasPrefix(":") ? "{}" : String($0) }
        return method.uppercased() + " /" + parts.joined(separator: "/")
    }

    /// Throws the 400 for the first parameter of `query` the operation does not take, or
    /// takes once and was given twice, or holds a NUL; nothing for an operation the rules do not name. A
    /// `HEAD` is checked as its `GET`. Keys are compared as sent (a percent-encoded key
    /// names nothing the handlers read).
    public func check(method: String, path: String, query: Parameters) throws {
        let method = method.uppercased() == "HEAD" ? "GET" : method
        let operation = Self.operation(method: method, path: path)
        guard let allowed = operations[operation] else { return }
        var seen: Set<Substring> = []
        for (key, value) in query where !key.isEmpty {
            let name = String(key)
            let echoed = UnknownField.echoed(name)
            guard allowed.contains(name) else {
                throw APIError.invalid(echoed, UnknownField.refusal(name, fields: allowed, of: operation, noun: "query parameter"))
            }
            guard seen.insert(key).inserted else {
                throw APIError.invalid(echoed, "is given twice; give each query parameter once")
            }
            // %00: no id, code or time holds one (a metric filter read as its prefix).
            guard !value.contains("\u{0}") else { throw APIError.invalid(echoed, "holds a NUL character") }
        }
    }
}

/// An OpenAPI document the rules cannot be read from.
public struct OpenAPIShapeError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { "the OpenAPI document \(message)" }
}

extension QueryParameterRules {
    /// The methods the operations of the rules take at `path` (a request's path: each
    /// `{}` of an operation matches one segment), `HEAD` with `GET`; sorted.
    public func methods(at path: String) -> [String] {
        let segments = path.split(separator: "/")
        var methods: Set<String> = []
        for operation in operations.keys {
            let parts = operation.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let template = parts[1].split(separator: "/")
            guard template.count == segments.count,
                zip(template, segments).allSatisfy({ $0.0 == "{}" || $0.0 == $0.1 })
            else { continue }
            methods.insert(String(parts[0]))
            if parts[0] == "GET" { methods.insert("HEAD") }
        }
        return methods.sorted()
    }
}

/// Holds requests to the API's operations (`QueryParameterRules`): a query parameter an
/// operation does not take (or one given twice) is a 400 naming it; a method a path does
/// not take is a 405 with `Allow` (`PUT /v1/subscriptions`, `GET /v1/events` on ingest),
/// where the router alone answers 404 "No such route" as if the path did not exist. Added
/// to a router, it checks the routes registered after it, and sees every request no route
/// matched.
public struct OperationRulesMiddleware<Context: RequestContext>: RouterMiddleware {
    let rules: QueryParameterRules

    public init(rules: QueryParameterRules) {
        self.rules = rules
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.query != nil, let path = context.endpointPath {
            try rules.check(method: request.method.rawValue, path: path, query: request.uri.queryParameters)
        }
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && (context.endpointPath ?? "NotFound") == "NotFound" {
            // No route matched (the router names the endpoint "NotFound" then).
            let allowed = rules.methods(at: request.uri.path)
            guard !allowed.isEmpty, !allowed.contains(request.method.rawValue) else { throw error }
            var refusal = APIError(
                .methodNotAllowed, code: "METHOD_NOT_ALLOWED",
                message: "\(request.method.rawValue) is not an operation of \(request.uri.path); it takes \(allowed.joined(separator: ", "))")
            refusal.headers[.allow] = allowed.joined(separator: ", ")
            throw refusal
        }
    }
}
