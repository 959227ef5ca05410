import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresClient
import TallyTestSupport
import Testing

@testable import BillingAPI

/// `GET /openapi.json` names exactly the operations the Billing API serves (the dashboard's
/// HTML pages aside), so the document cannot silently fall behind a new route; the
/// contract run (`ops/contract/contract_test.sh`) validates it and calls every operation.
@Suite("The OpenAPI document")
struct OpenAPIDocumentTests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    /// `GET /v1/alerts/{alert_id}` → `GET /v1/alerts/{}`: parameter names aside.
    static func normalized(_ method: String, _ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map { part -> String in
            guard part.hasPrefix("{") else { return String(part) }
            // `{invoice_id}.pdf` is served by the `{invoice_id}` route.
            return "{}"
        }
        return method.uppercased() + " /" + parts.joined(separator: "/")
    }

    @Test("served at /openapi.json without a token; its operations are exactly the router's, plus the ingest API's POST /v1/events")
    func documentMatchesRoutes() async throws {
        let document = try await app().test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                return try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
            }
        }
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let methods: Set<String> = ["get", "post", "put", "patch", "delete"]
        var documented = Set<String>()
        for (path, item) in paths where path != "/v1/events" {
            for method in item.keys where methods.contains(method) { documented.insert(Self.normalized(method, path)) }
        }
        #expect((paths["/v1/events"]?["post"] as? [String: Any])?["operationId"] as? String == "ingestEvents")

        var configuration = BillingAPIConfiguration(databaseURL: TestEnvironment.databaseURL, adminToken: adminToken)
        configuration.databasePoolSize = 1
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: configuration.databaseURL), size: 1, logger: Logger(label: "test"))
        let router = try buildRouter(pool: pool, configuration: configuration)
        let served = Set(
            router.routes.map { Self.normalized($0.method.rawValue, $0.path.description) }.filter { !$0.contains(" /dashboard") })
        await pool.close()
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
        #expect(served.count > 30)
    }
}
