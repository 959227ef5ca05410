import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import TallyTestSupport

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

    func json(_ response: TestResponse) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any] ?? [:]
    }
}
