import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresClient
import TallyTestSupport
import Testing

@testable import BillingAPI

/// `POST /v1/billing-runs` plans in the database with its commands in the outbox; the
/// running `invoicer run` (started by `./ops/local.sh up`) publishes and carries them out.
@Suite("Billing API: billing runs")
struct BillingRunAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    @Test("a run for one tenant is planned over HTTP, completed by the running Invoicer, and its progress read back")
    func runForOneTenant() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        let tenant = try await pool.query("INSERT INTO tenants (name, billing_email) VALUES ('Run', 'ap@run.test') RETURNING id")[0]
            .decode(0, as: UUID.self)
        let subscription = try await pool.query(
            "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, '2026-06-01T00:00:00Z', '2026-06-01T00:00:00Z') RETURNING id",
            [tenant])[0].decode(0, as: UUID.self)
        try await pool.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, 'starter', 1, '2026-06-01T00:00:00Z', 'start', '2026-06-01T00:00:00Z')
            """, [subscription])
        try await app().test(.router) { client in
            let body = #"{"as_of": "2026-08-01T02:00:00Z", "tenant_id": "\#(tenant.uuidString)"}"#
            // The same run asked twice at once (a retried click): one invoice per period, and
            // each run counts only the invoices it issued (both said issued 2 before).
            var ids: [String] = []
            for _ in 0..<2 {
                ids.append(
                    try await client.execute(uri: "/v1/billing-runs", method: .post, headers: bearer(adminToken), body: ByteBuffer(string: body)) {
                        response in
                        #expect(response.status == .accepted)
                        let run = try json(response)
                        // June and July; the second run plans what the first has not issued yet
                        // (one, if the running Invoicer issued June between the two requests).
                        let due = try #require(run["due"] as? Int)
                        #expect(ids.isEmpty ? due == 2 : (0...2).contains(due), "\(run)")
                        return try #require(run["id"] as? String)
                    })
            }
            #expect(ids.count == 2)
            var runs: [[String: Any]] = []
            for id in ids {
                let deadline = ContinuousClock.now + .seconds(120)
                var run: [String: Any] = [:]
                while ContinuousClock.now < deadline {
                    run = try await client.execute(uri: "/v1/billing-runs/\(id)", method: .get, headers: bearer(adminToken)) { try json($0) }
                    if run["status"] as? String == "completed" { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(run["status"] as? String == "completed")
                let counted = ["issued", "already_issued", "skipped", "failed"].reduce(0) { $0 + (run[$1] as? Int ?? 0) }
                #expect(counted == run["due"] as? Int, "\(run)")
                runs.append(run)
            }
            #expect(runs.reduce(0) { $0 + ($1["issued"] as? Int ?? 0) } == 2, "\(runs)")
            // Whatever the second planned beyond the first's two was already issued, not skipped or failed.
            #expect(runs.allSatisfy { $0["skipped"] as? Int == 0 && $0["failed"] as? Int == 0 }, "\(runs)")
            #expect(
                runs.reduce(0) { $0 + ($1["already_issued"] as? Int ?? -1) } == runs.reduce(0) { $0 + ($1["due"] as? Int ?? 0) } - 2, "\(runs)")
            let id = ids[0]
            let key = try await pool.query(
                "SELECT count(*) FROM invoices WHERE subscription_id = $1 AND total_cents = 29900", [subscription])[0].decode(0, as: Int.self)
            #expect(key == 2)
            try await client.execute(uri: "/v1/billing-runs/\(id)", method: .get, headers: bearer("tally_not_a_key")) { response in
                #expect(response.status == .unauthorized)
            }
        }
        await pool.close()
    }
}
