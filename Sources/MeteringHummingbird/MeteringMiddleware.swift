import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metering
import NIOCore
import Synchronization
import UsageEvents

/// Hummingbird middleware for API servers that bill by usage:
/// - every request of a known tenant is metered as one `api_calls` event with the
///   endpoint, method, status and latency in its metadata;
/// - a `201 Created` on a route listed in `creations` is metered as one event of
///   that route's metric (e.g. `estimates`), its id derived from the created
///   resource's id so a retried creation is not counted twice;
/// - metrics the tenant's plan enforces `hard` are refused at the quota with
///   429 `QUOTA_EXCEEDED`, and tenants without a subscription with 403
///   `NO_SUBSCRIPTION` — decided from a local `QuotaView`, never a database query.
///   Without fresh quota state the request is allowed and metered, and counted.
public struct MeteringMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Finds the tenant a request is for (request context, API key, …); nil: not metered.
    public typealias TenantResolver = @Sendable (Request, Context) -> UUID?

    let meter: Meter
    let quotas: QuotaView?
    let tenant: TenantResolver
    let skip: @Sendable (Request) -> Bool
    let creations: [String: String]
    let unknownQuotaDecisions: UnknownQuotaCounter

    /// - Parameters:
    ///   - creations: route path (as registered, e.g. `/estimates`) → metric of a 201 there.
    ///   - skip: requests that are never metered (health checks by default).
    public init(
        meter: Meter, quotas: QuotaView?, creations: [String: String] = [:],
        skip: @escaping @Sendable (Request) -> Bool = { ["/healthz", "/readyz", "/metrics"].contains($0.uri.path) },
        tenant: @escaping TenantResolver
    ) {
        self.meter = meter
        self.quotas = quotas
        self.tenant = tenant
        self.skip = skip
        self.creations = creations
        self.unknownQuotaDecisions = UnknownQuotaCounter()
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard !skip(request), let tenant = tenant(request, context) else { return try await next(request, context) }
        let creationMetric = request.method == .post ? creations[request.uri.path] : nil
        for metric in ["api_calls"] + (creationMetric.map { [$0] } ?? []) {
            if let refusal = refusal(tenant: tenant, metric: metric, context: context) { return refusal }
        }
        let started = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            record(tenant: tenant, request: request, context: context, status: status, started: started)
            throw error
        }
        record(tenant: tenant, request: request, context: context, status: response.status, started: started)
        guard response.status == .created, let creationMetric else { return response }
        return await recordCreation(response, metric: creationMetric, tenant: tenant, context: context)
    }

    private func refusal(tenant: UUID, metric: String, context: Context) -> Response? {
        guard let quotas else { return nil }
        switch quotas.decision(tenant: tenant, metric: metric, now: Date()) {
        case .allow:
            return nil
        case .unknown:
            unknownQuotaDecisions.increment()
            context.logger.debug("no fresh quota state; allowing and metering", metadata: ["tenant.id": "\(tenant.uuidString.lowercased())"])
            return nil
        case .exceeded(let used, let quota):
            return Self.errorResponse(
                .tooManyRequests,
                [
                    "code": "QUOTA_EXCEEDED", "metric": metric, "usage": used.description, "quota": quota.description,
                    "message": "The \(metric) quota of this billing period is used up; upgrade the plan or wait for the next period.",
                ])
        case .noSubscription:
            return Self.errorResponse(
                .forbidden,
                ["code": "NO_SUBSCRIPTION", "message": "This tenant has no active subscription; subscribe to a plan first."])
        }
    }

    private func record(tenant: UUID, request: Request, context: Context, status: HTTPResponse.Status, started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        let milliseconds = Decimal(elapsed.components.seconds * 1000) + Decimal(elapsed.components.attoseconds / 1_000_000_000_000_000)
        do {
            try meter.track(
                tenant: tenant, metric: "api_calls", name: "\(request.method) \(context.endpointPath ?? request.uri.path)",
                unit: "api_call",
                metadata: [
                    "endpoint": .string(context.endpointPath ?? request.uri.path), "method": .string("\(request.method)"),
                    "status": .number(Decimal(status.code)), "latency_ms": .number(milliseconds),
                ],
                traceparent: request.headers[HTTPField.Name("traceparent")!])
        } catch {
            context.logger.error("api call not metered", metadata: ["error": "\(error)", "tenant.id": "\(tenant.uuidString.lowercased())"])
        }
    }

    /// Meters a creation with the created resource's id (JSON body `id`, or the last
    /// segment of `Location`), and hands the response on unchanged.
    private func recordCreation(_ response: Response, metric: String, tenant: UUID, context: Context) async -> Response {
        var response = response
        var resourceID = response.headers[.location].flatMap { $0.split(separator: "/").last.map(String.init) }
        if resourceID == nil, let body = try? await ResponseCollector.collect(response.body) {
            let json = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            resourceID = (json?["id"] as? String) ?? (json?["id"] as? Int).map(String.init)
            response.body = ResponseBody(byteBuffer: body)
        }
        do {
            try meter.track(
                tenant: tenant, metric: metric, name: "create \(metric)",
                metadata: resourceID.map { ["resource_id": .string($0)] } ?? [:],
                id: resourceID.map { "\(metric):\(tenant):\($0)" })
        } catch {
            context.logger.error("creation not metered", metadata: ["error": "\(error)", "tenant.id": "\(tenant.uuidString.lowercased())"])
        }
        return response
    }

    private static func errorResponse(_ status: HTTPResponse.Status, _ error: [String: String]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: ["error": error], options: [.sortedKeys])) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Decisions made without fresh quota state, for the application's metrics.
    public var unknownQuotaDecisionCount: Int { unknownQuotaDecisions.value }
}

/// Counts requests allowed for want of quota state.
final class UnknownQuotaCounter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

/// Collects a response body that is already fully produced by a route.
enum ResponseCollector {
    static func collect(_ body: ResponseBody) async throws -> ByteBuffer {
        let collected = Collected()
        try await body.write(CollectingWriter(collected: collected))
        return collected.buffer.withLock { $0 }
    }

    final class Collected: Sendable {
        let buffer = Mutex(ByteBuffer())
    }

    struct CollectingWriter: ResponseBodyWriter {
        let collected: Collected

        mutating func write(_ buffer: ByteBuffer) async throws {
            collected.buffer.withLock { collected in
                var incoming = buffer
                collected.writeBuffer(&incoming)
            }
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
