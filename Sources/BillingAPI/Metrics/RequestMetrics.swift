import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import TallyRuntime
import TallyStore

/// What the billing API answered: requests by route, method and status, and their
/// durations by route, served on `/metrics` with the authenticator's counters.
/// Routes are the router's templates (`/v1/invoices/{id}`), so the label set stays small.
final class RequestMetrics: Sendable {
    static let bounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    struct Key: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private struct State {
        var requests: [Key: Int] = [:]
        var durations: [String: PrometheusText.Histogram] = [:]
    }

    private let state = Mutex(State())

    func record(route: String, method: String, status: Int, seconds: Double) {
        state.withLock { state in
            state.requests[Key(route: route, method: method, status: status), default: 0] += 1
            state.durations[route, default: PrometheusText.Histogram(bounds: Self.bounds)].observe(seconds)
        }
    }

    func render(authentication: AuthenticationCounts) -> String {
        let snapshot = state.withLock { $0 }
        var text = PrometheusText()
        let requests = snapshot.requests.sorted { ($0.key.route, $0.key.method, $0.key.status) < ($1.key.route, $1.key.method, $1.key.status) }
        text.family(
            "tally_api_requests_total", "counter", "Requests answered, by route template, method and status",
            requests.map { ([("route", $0.key.route), ("method", $0.key.method), ("status", "\($0.key.status)")], "\($0.value)") })
        text.histogram(
            "tally_api_request_duration_seconds", "Time from a request's arrival to its answer's head, by route template",
            bounds: Self.bounds, snapshot.durations.sorted { $0.key < $1.key }.map { ([("route", $0.key)], $0.value) })
        text.authentication(authentication)
        return text.text
    }

    /// The middleware that feeds it: outermost, so errors turned into answers are counted with their status.
    struct Middleware<Context: RequestContext>: RouterMiddleware {
        let metrics: RequestMetrics

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            let started = ContinuousClock.now
            let method = request.method.rawValue
            do {
                let response = try await next(request, context)
                metrics.record(route: Self.route(context), method: method, status: response.status.code, seconds: Self.seconds(since: started))
                return response
            } catch {
                let status = (error as? any HTTPResponseError)?.status.code ?? 500
                metrics.record(route: Self.route(context), method: method, status: status, seconds: Self.seconds(since: started))
                throw error
            }
        }

        /// The matched route's template; `unmatched` for paths no route serves (Hummingbird says
        /// `NotFound` once routing failed, nothing when a middleware answered before routing).
        static func route(_ context: Context) -> String {
            guard let path = context.endpointPath, path != "NotFound" else { return "unmatched" }
            return path
        }

        static func seconds(since started: ContinuousClock.Instant) -> Double {
            let elapsed = ContinuousClock.now - started
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
    }
}
