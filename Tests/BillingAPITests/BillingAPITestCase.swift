import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import TallyTestSupport
import Testing

@testable import BillingAPI

/// What the billing API suites share: the application built as production builds it,
/// over the real PostgreSQL, with the suite's own admin token.
protocol BillingAPITestCase {
    var adminToken: String { get }
}

/// The Stripe webhook signing secret every test application is configured with.
let stripeWebhookSecret = "whsec_test_\(UUID().uuidString)"

extension BillingAPITestCase {
    func app(allowPrivateWebhooks: Bool = false) async throws -> some ApplicationProtocol {
        var configuration = BillingAPIConfiguration(databaseURL: TestEnvironment.databaseURL, adminToken: adminToken)
        configuration.allowPrivateWebhooks = allowPrivateWebhooks
        configuration.port = 0
        configuration.databasePoolSize = 2
        configuration.stripeWebhookSecret = stripeWebhookSecret
        return try await buildApplication(configuration, logger: Logger(label: "test.billing-api"))
    }

    func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)", .contentType: "application/json"] }

    /// A new tenant created through the API with the admin token: its id and API key.
    func createTenant(
        _ client: some TestClientProtocol, name: String = "Test Co", billingEmail: String = "ap@tenant.test", taxRateBps: Int = 0
    ) async throws -> (id: String, key: String) {
        try await client.execute(
            uri: "/v1/tenants", method: .post, headers: bearer(adminToken),
            body: ByteBuffer(string: #"{"name": "\#(name)", "billing_email": "\#(billingEmail)", "tax_rate_bps": \#(taxRateBps)}"#)
        ) { response in
            let body = try json(response)
            return (try #require(body["id"] as? String), try #require(body["api_key"] as? String))
        }
    }

    func json(_ response: TestResponse) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any] ?? [:]
    }
}
