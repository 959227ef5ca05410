import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `/healthz` answers while the process serves HTTP (liveness); `/readyz` also
/// checks the dependencies given by `readiness` (e.g. a database round trip).
public struct HealthRoutes<Context: RequestContext>: Sendable {
    let readiness: @Sendable () async -> Bool

    public init(readiness: @escaping @Sendable () async -> Bool) {
        self.readiness = readiness
    }

    public func register(on router: Router<Context>) {
        router.get("/healthz") { _, _ in HealthStatus(status: "ok") }
        router.get("/readyz") { _, _ -> Response in
            let ready = await readiness()
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: ready ? #"{"status":"ready"}"# : #"{"status":"unavailable"}"#)))
        }
    }
}

struct HealthStatus: ResponseEncodable {
    let status: String
}
