import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metering
import MeteringHummingbird
import ServiceLifecycle

/// A sample API server billed by usage: every request of a tenant (named by the
/// `X-Tenant-ID` header) is metered as `api_calls`, each estimate it creates as
/// `estimates`, and `hard` quotas are enforced from Tally's quota broadcasts.
///
///     AMQP_URL=amqp://… SAMPLE_API_PORT=8090 SAMPLE_SPOOL_DIR=/tmp/sample-spool swift run SampleAPI
@main
struct SampleAPI {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        let logger = Logger(label: "sample-api")
        guard let amqpURL = environment["AMQP_URL"] else {
            print("AMQP_URL is not set: point it at Tally's broker (ops/local.sh writes it in .local/env)")
            exit(2)
        }
        let port = Int(environment["SAMPLE_API_PORT"] ?? "") ?? 8090
        let spool = environment["SAMPLE_SPOOL_DIR"] ?? FileManager.default.temporaryDirectory.appendingPathComponent("sample-api-spool").path

        // The README's set-up, in one call each.
        let meter = try await Meter.connecting(to: amqpURL, spoolDirectory: spool, logger: logger)
        let quotas = QuotaView()
        let listener = try QuotaStateListener(amqpURL: amqpURL, view: quotas, logger: logger)

        let router = Router()
        router.add(
            middleware: MeteringMiddleware(meter: meter, quotas: quotas, creations: ["/estimates": "estimates"]) { request, _ in
                tenant(of: request)
            })
        router.get("healthz") { _, _ in "ok" }
        router.post("estimates") { _, _ in
            Response(
                status: .created, headers: [.contentType: "application/json", .location: "/estimates/\(UUID().uuidString.lowercased())"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"status": "created"}"#)))
        }
        router.get("estimates/:id") { _, context in "estimate \(context.parameters.get("id") ?? "")" }
        router.get("reports") { request, _ in
            // Usage the server meters itself, beside the middleware's.
            if let tenant = tenant(of: request) {
                try meter.track(tenant: tenant, metric: "documents", quantity: 1, metadata: ["report": .string("monthly")])
            }
            return "report"
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        let group = ServiceGroup(
            services: [MeterService(meter: meter), QuotaListenerService(listener: listener), app],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// The tenant a request is for: however your app knows it (here a header).
func tenant(of request: Request) -> UUID? {
    request.headers[HTTPField.Name("X-Tenant-ID")!].flatMap(UUID.init(uuidString:))
}

/// The meter in the service group: it publishes until graceful shutdown, then flushes.
struct MeterService: Service {
    let meter: Meter

    func run() async throws {
        await withGracefulShutdownHandler {
            await meter.run()
        } onGracefulShutdown: {
            meter.shutdown()
        }
    }
}

/// Keeps the quota view fed until the group is cancelled.
struct QuotaListenerService: Service {
    let listener: QuotaStateListener

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await listener.run() }
    }
}
