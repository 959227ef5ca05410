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

/// `/v1/metrics` and `/v1/plans` over the real PostgreSQL (SPEC §2.1). Every plan and
/// metric here has a code of this run's own.
@Suite("Billing API: the pricing catalog")
struct CatalogAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"
    let run = UUID().uuidString.prefix(8).lowercased()

    func post(_ client: some TestClientProtocol, _ uri: String, _ body: String, token: String? = nil) async throws -> (
        HTTPResponse.Status, [String: Any]
    ) {
        try await client.execute(uri: uri, method: .post, headers: bearer(token ?? adminToken), body: ByteBuffer(string: body)) { response in
            (response.status, try json(response))
        }
    }

    func get(_ client: some TestClientProtocol, _ uri: String, token: String? = nil) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await client.execute(uri: uri, method: .get, headers: bearer(token ?? adminToken)) { response in (response.status, try json(response)) }
    }

    func errorField(_ body: [String: Any]) -> String? { (body["error"] as? [String: Any])?["field"] as? String }

    /// A plan body with `charges` (JSON text of the array).
    func plan(_ code: String, charges: String, extra: String = "") -> String {
        #"{"code": "\#(code)", "name": "Test plan", "currency": "eur", "base_cents": 1000\#(extra), "charges": \#(charges)}"#
    }

    @Test("a graduated plan is created as version 1, read back exactly, and a new version is version 2; subscriptions take the newest")
    func createAndVersion() async throws {
        try await app().test(.router) { client in
            let code = "test-grad-\(run)"
            let charges = """
                [{"metric": "api_calls", "enforcement": "soft", "quota": 50000, "model": "graduated",
                  "tiers": [{"up_to": 1000, "unit_price": 0}, {"up_to": "10000", "unit_price": "0.000125", "flat_cents": 500},
                            {"up_to": null, "unit_price": 0.25}]},
                 {"metric": "users", "model": "package", "included": 2, "size": 5, "price_cents": 2500}]
                """
            let (status, created) = try await post(client, "/v1/plans", plan(code, charges: charges, extra: #", "trial_days": 14"#))
            #expect(status == .created)
            #expect(created["version"] as? Int == 1 && created["currency"] as? String == "eur" && created["trial_days"] as? Int == 14)
            let stored = try #require(created["charges"] as? [[String: Any]])
            #expect(stored.map { $0["metric"] as? String } == ["api_calls", "users"])
            let tiers = try #require(stored[0]["tiers"] as? [[String: Any]])
            // Decimals come back as the exact text, the open tier as null.
            #expect(tiers.map { $0["up_to"] as? String } == ["1000", "10000", nil])
            #expect(tiers.map { $0["unit_price"] as? String } == ["0", "0.000125", "0.25"])
            #expect(tiers.map { $0["flat_cents"] as? Int } == [0, 500, 0])
            #expect(stored[1]["size"] as? String == "5" && stored[1]["price_cents"] as? Int == 2500)
            // The same code again: 409, pointing at the versions route.
            let (again, refusal) = try await post(client, "/v1/plans", plan(code, charges: "[]"))
            #expect(again == .conflict && errorField(refusal) == "code")
            // Version 2, with another base fee.
            let (added, second) = try await post(
                client, "/v1/plans/\(code)/versions", #"{"name": "Test plan", "currency": "eur", "base_cents": 2000, "charges": []}"#)
            #expect(added == .created && second["version"] as? Int == 2 && second["code"] as? String == code)
            let (shown, whole) = try await get(client, "/v1/plans/\(code)")
            #expect(shown == .ok && (whole["versions"] as? [[String: Any]])?.map { $0["version"] as? Int } == [1, 2])
            let (one, first) = try await get(client, "/v1/plans/\(code)/versions/1")
            #expect(one == .ok && first["base_cents"] as? Int == 1000)
            #expect(try await get(client, "/v1/plans/\(code)/versions/3").0 == .notFound)
            // A subscription takes version 2 (and the plan's default trial unless it says).
            let tenant = try await createTenant(client)
            let (subscribed, subscription) = try await post(
                client, "/v1/subscriptions", #"{"tenant_id": "\#(tenant.id)", "plan": "\#(code)", "start": "2026-03-01T00:00:00Z"}"#)
            #expect(subscribed == .created)
            #expect(subscription["trial_end"] == nil || subscription["trial_end"] is NSNull)  // version 2 has no trial
            #expect(subscription["plan"] as? String == code && subscription["plan_version"] as? Int == 2)
            // Another version of the plan in force is a migration, not a plan change; a plan of
            // another interval cannot take over the subscription's periods.
            let subscriptionID = try #require(subscription["id"] as? String)
            #expect(
                try await post(client, "/v1/plans/\(code)/versions", #"{"name": "Test plan", "currency": "eur", "base_cents": 3000}"#).0 == .created)
            let (sameCode, migrationHint) = try await post(
                client, "/v1/subscriptions/\(subscriptionID)/change", #"{"plan": "\#(code)", "at": "2026-03-10T00:00:00Z"}"#)
            #expect(sameCode == .conflict && errorField(migrationHint) == "plan")
            #expect(((migrationHint["error"] as? [String: Any])?["message"] as? String)?.contains("/migrations") == true)
            let yearly = "test-yearly-\(run)"
            #expect(try await post(client, "/v1/plans", plan(yearly, charges: "[]", extra: #", "interval": "year""#)).0 == .created)
            let (otherInterval, intervalWhy) = try await post(
                client, "/v1/subscriptions/\(subscriptionID)/change", #"{"plan": "\#(yearly)", "at": "2026-03-10T00:00:00Z"}"#)
            #expect(otherInterval == .conflict && errorField(intervalWhy) == "plan")
            let (listed, plans) = try await get(client, "/v1/plans")
            let codes = (plans["data"] as? [[String: Any]])?.compactMap { $0["code"] as? String } ?? []
            #expect(listed == .ok && codes.contains(code) && codes.contains("starter"))
            let versionTwo = try #require(
                ((try await get(client, "/v1/plans/\(code)")).1["versions"] as? [[String: Any]])?.first { $0["version"] as? Int == 2 })
            #expect(versionTwo["subscriptions"] as? Int == 1)
            // A tenant key reads the prices, not how many subscribe to them.
            let (_, asTenant) = try await get(client, "/v1/plans/\(code)", token: tenant.key)
            let tenantVersions = try #require(asTenant["versions"] as? [[String: Any]])
            #expect(tenantVersions.count == 3 && tenantVersions.allSatisfy { $0["subscriptions"] == nil && $0["base_cents"] is Int })
            #expect(try await get(client, "/v1/plans/\(code)/versions/2", token: tenant.key).1["subscriptions"] == nil)
            let tenantList = try await get(client, "/v1/plans", token: tenant.key).1["data"] as? [[String: Any]] ?? []
            #expect(
                !tenantList.isEmpty
                    && tenantList.allSatisfy { ($0["versions"] as? [[String: Any]])?.allSatisfy { $0["subscriptions"] == nil } == true })
            // Archived: closed to new subscriptions and new versions, kept for the one on it.
            let (archived, closed) = try await post(client, "/v1/plans/\(code)/archive", "")
            #expect(archived == .ok && closed["archived_at"] is String)
            let other = try await createTenant(client)
            let (refused, why) = try await post(
                client, "/v1/subscriptions", #"{"tenant_id": "\#(other.id)", "plan": "\#(code)", "start": "2026-03-01T00:00:00Z"}"#)
            #expect(refused == .badRequest && errorField(why) == "plan")
            let whyText = (why["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(whyText.hasPrefix("is archived") && whyText.contains("open plans: "), "\(whyText)")
            let (unknown, none) = try await post(
                client, "/v1/subscriptions", #"{"tenant_id": "\#(other.id)", "plan": "no-such-\#(code)", "start": "2026-03-01T00:00:00Z"}"#)
            let noneText = (none["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(unknown == .badRequest && errorField(none) == "plan" && noneText.hasPrefix("names no plan"), "\(noneText)")
            #expect(try await post(client, "/v1/plans/\(code)/versions", #"{"name": "x", "currency": "eur", "base_cents": 1}"#).0 == .conflict)
        }
    }

    @Test(
        "each invalid definition is refused with the path of the field at fault",
        arguments: [
            // (the charges, or the whole body after its code; the field named)
            (
                #"[{"metric": "api_calls", "model": "graduated", "tiers": [{"up_to": 10, "unit_price": 1}, {"from": 20, "up_to": null, "unit_price": 1}]}]"#,
                "charges[0].tiers[1].from"
            ),
            (
                #"[{"metric": "api_calls", "model": "graduated", "tiers": [{"up_to": 10, "unit_price": 1}, {"from": 5, "up_to": null, "unit_price": 1}]}]"#,
                "charges[0].tiers[1].from"
            ),
            (
                #"[{"metric": "api_calls", "model": "volume", "tiers": [{"up_to": 10, "unit_price": 1}, {"up_to": 10, "unit_price": 1}, {"up_to": null, "unit_price": 1}]}]"#,
                "charges[0].tiers[1].up_to"
            ),
            (
                #"[{"metric": "users", "model": "standard", "unit_price": 1}, {"metric": "api_calls", "model": "graduated", "tiers": [{"up_to": 100, "unit_price": 1}, {"up_to": 50, "unit_price": 1}, {"up_to": null, "unit_price": 1}]}]"#,
                "charges[1].tiers[1].up_to"
            ),
            (
                #"[{"metric": "api_calls", "model": "graduated", "tiers": [{"up_to": 10, "unit_price": 1}, {"up_to": 20, "unit_price": 1}]}]"#,
                "charges[0].tiers[1].up_to"
            ),
            (
                #"[{"metric": "api_calls", "model": "graduated", "tiers": [{"up_to": null, "unit_price": 1}, {"up_to": null, "unit_price": 1}]}]"#,
                "charges[0].tiers[0].up_to"
            ),
            (#"[{"metric": "api_calls", "model": "standard", "unit_price": -1}]"#, "charges[0].unit_price"),
            (#"[{"metric": "api_calls", "model": "standard", "unit_price": "0.0000001"}]"#, "charges[0].unit_price"),
            (
                #"[{"metric": "api_calls", "model": "volume", "tiers": [{"up_to": null, "unit_price": "1.1234567"}]}]"#,
                "charges[0].tiers[0].unit_price"
            ),
            (#"[{"metric": "no_such_metric_anywhere", "model": "standard", "unit_price": 1}]"#, "charges[0].metric"),
            (#"[{"metric": "api_calls", "model": "tiered", "unit_price": 1}]"#, "charges[0].model"),
            (
                #"[{"metric": "api_calls", "model": "standard", "unit_price": 1}, {"metric": "api_calls", "model": "standard", "unit_price": 2}]"#,
                "charges[1].metric"
            ),
            (#"[{"metric": "api_calls", "model": "package", "size": 0, "price_cents": 100}]"#, "charges[0].size"),
            (#"[{"metric": "api_calls", "enforcement": "hard", "model": "standard", "unit_price": 1}]"#, "charges[0].quota"),
            (#"[{"metric": "api_calls", "model": "standard", "unit_price": 1, "quota": "1.00001"}]"#, "charges[0].quota"),
            (#""name": "Bad", "currency": "xyz", "base_cents": 100"#, "currency"),
            (#""name": "Bad", "currency": "usd", "interval": "week", "base_cents": 100"#, "interval"),
            (#""name": "Bad", "currency": "usd", "base_cents": -5"#, "base_cents"),
            (#""currency": "usd", "base_cents": 5"#, "name"),
            (#""name": "Bad\u0000name", "currency": "usd", "base_cents": 5"#, "name"),
            // A misspelt key is refused at every level, not dropped for its default.
            (#""name": "Bad", "currency": "usd", "base_cents": 5, "trial_dayz": 14"#, "trial_dayz"),
            (#"[{"metric": "api_calls", "model": "standard", "inclued": 1000, "unit_price": "10"}]"#, "charges[0].inclued"),
            (#"[{"metric": "api_calls", "model": "standard", "enforcment": "hard", "quota": 5, "unit_price": 1}]"#, "charges[0].enforcment"),
            (#"[{"metric": "api_calls", "model": "standard", "unit_price": 1, "tiers": []}]"#, "charges[0].tiers"),
            (
                #"[{"metric": "api_calls", "model": "graduated", "tiers": [{"up_to": 10, "unit_price": 0, "flat_cent": 500}, {"up_to": null, "unit_price": 1}]}]"#,
                "charges[0].tiers[0].flat_cent"
            ),
        ])
    func invalidDefinitions(charges: String, field: String) async throws {
        try await app().test(.router) { client in
            let rest = charges.hasPrefix("[") ? #""name": "Bad", "currency": "usd", "base_cents": 100, "charges": \#(charges)"# : charges
            let body = #"{"code": "test-bad-\#(run)", \#(rest)}"#
            let (status, error) = try await post(client, "/v1/plans", body)
            #expect(status == .badRequest, "\(field)")
            #expect(errorField(error) == field, "\(error)")
            // Nothing was created.
            #expect(try await get(client, "/v1/plans/test-bad-\(run)").0 == .notFound)
        }
    }

    @Test("a misspelt key is named with the field it resembles: plans, their versions and metrics")
    func misspeltKeys() async throws {
        try await app().test(.router) { client in
            let code = "test-typo-\(run)"
            var (status, error) = try await post(
                client, "/v1/plans",
                #"{"code": "\#(code)", "name": "x", "currency": "usd", "base_cents": 1000, "charges": [{"metric": "api_calls", "model": "standard", "inclued": 1000, "unit_price": "10"}]}"#
            )
            #expect(status == .badRequest)
            #expect(
                (error["error"] as? [String: Any])?["message"] as? String
                    == "is not a field of a standard charge (did you mean included?); its fields are metric, enforcement, quota, model, included, unit_price"
            )
            #expect(try await get(client, "/v1/plans/\(code)").0 == .notFound)
            (status, error) = try await post(client, "/v1/metrics", #"{"code": "test_typo_\#(run)", "aggregaton": "max"}"#)
            #expect(status == .badRequest && errorField(error) == "aggregaton")
            #expect(((error["error"] as? [String: Any])?["message"] as? String)?.contains("did you mean aggregation?") == true, "\(error)")
            #expect(try await get(client, "/v1/metrics/test_typo_\(run)").0 == .notFound)
            // A version's body may repeat its path's code, not name another.
            (status, _) = try await post(client, "/v1/plans", #"{"code": "\#(code)", "name": "x", "currency": "usd", "base_cents": 1000}"#)
            #expect(status == .created)
            (status, error) = try await post(
                client, "/v1/plans/\(code)/versions", #"{"code": "other", "name": "x", "currency": "usd", "base_cents": 1}"#)
            #expect(status == .badRequest && errorField(error) == "code")
            (status, _) = try await post(
                client, "/v1/plans/\(code)/versions", #"{"code": "\#(code)", "name": "x", "currency": "usd", "base_cents": 1}"#)
            #expect(status == .created)
            #expect(try await post(client, "/v1/plans/\(code)/archive", "").0 == .ok)
        }
    }

    @Test("a tenant key reads the catalog but cannot create or change plans or metrics")
    func tenantKeyCannotWrite() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            #expect(try await post(client, "/v1/plans", plan("test-tenant-\(run)", charges: "[]"), token: tenant.key).0 == .forbidden)
            #expect(try await post(client, "/v1/plans/starter/versions", plan("starter", charges: "[]"), token: tenant.key).0 == .forbidden)
            #expect(try await post(client, "/v1/plans/starter/archive", "", token: tenant.key).0 == .forbidden)
            #expect(try await post(client, "/v1/metrics", #"{"code": "test_\#(run)"}"#, token: tenant.key).0 == .forbidden)
            #expect(try await get(client, "/v1/plans/starter", token: tenant.key).0 == .ok)
            #expect(try await get(client, "/v1/metrics/api_calls", token: tenant.key).0 == .ok)
            #expect(try await get(client, "/v1/plans/test-tenant-\(run)").0 == .notFound)
        }
    }

    @Test("metrics: created, renamed, its aggregation changed while unused; 409 once a plan charges it")
    func metrics() async throws {
        try await app().test(.router) { client in
            let code = "test_sms_\(run)"
            let (created, metric) = try await post(client, "/v1/metrics", #"{"code": "\#(code)", "name": "SMS", "unit": "message"}"#)
            #expect(created == .created && metric["aggregation"] as? String == "sum")
            let (renamed, _) = try await post(client, "/v1/metrics", #"{"code": "\#(code)", "name": "Text messages", "unit": "message"}"#)
            #expect(renamed == .ok)
            #expect(try await post(client, "/v1/metrics", #"{"code": "\#(code)", "aggregation": "max"}"#).0 == .ok)
            #expect(try await get(client, "/v1/metrics/\(code)").1["aggregation"] as? String == "max")
            let (badField, refusal) = try await post(client, "/v1/metrics", #"{"code": "\#(code)", "aggregation": "unique_count"}"#)
            #expect(badField == .badRequest && errorField(refusal) == "field")
            // Charged by a plan: its aggregation is fixed, the refusal names the plan.
            let plan = "test-sms-\(run)"
            #expect(
                try await post(client, "/v1/plans", self.plan(plan, charges: #"[{"metric": "\#(code)", "model": "standard", "unit_price": 2}]"#))
                    .0 == .created)
            let (conflict, why) = try await post(client, "/v1/metrics", #"{"code": "\#(code)", "aggregation": "sum"}"#)
            #expect(conflict == .conflict && errorField(why) == "aggregation")
            #expect(((why["error"] as? [String: Any])?["message"] as? String)?.contains("\(plan) v1") == true)
            // Seeded metrics with usage recorded cannot change either.
            #expect(try await post(client, "/v1/metrics", #"{"code": "api_calls", "aggregation": "max"}"#).0 == .conflict)
            // Nor can a metric the catalog never defined, once usage of it is recorded: it
            // was summed (SPEC §2), and max would have rewritten what was counted (201 before).
            let undeclared = "test_undeclared_\(run)"
            let tenant = try await createTenant(client)
            let pool = PostgresPool(
                configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
            try await pool.query(
                "INSERT INTO usage_rollups (tenant_id, metric, hour, quantity_sum, event_count, quantity_max) VALUES ($1, $2, date_trunc('hour', now()), 7, 2, 4)",
                [tenant.id, undeclared])
            await pool.close()
            let (redefined, reason) = try await post(client, "/v1/metrics", #"{"code": "\#(undeclared)", "aggregation": "max"}"#)
            #expect(redefined == .conflict && errorField(reason) == "aggregation", "\(reason)")
            #expect(try await get(client, "/v1/metrics/\(undeclared)").0 == .notFound)
            // Declared as what it was (sum), it is simply named.
            #expect(try await post(client, "/v1/metrics", #"{"code": "\#(undeclared)", "name": "Undeclared"}"#).0 == .created)
            let (listed, all) = try await get(client, "/v1/metrics")
            #expect(listed == .ok && ((all["data"] as? [[String: Any]])?.contains { $0["code"] as? String == code } ?? false))
        }
    }

    @Test(
        "migrations: only the admin token; an unknown version names its field; versions of other currencies are refused; a dry run with no one on the version moves no one"
    )
    func migrations() async throws {
        try await app().test(.router) { client in
            let code = "test-mig-\(run)"
            #expect(try await post(client, "/v1/plans", plan(code, charges: "[]")).0 == .created)
            #expect(try await post(client, "/v1/plans/\(code)/versions", #"{"name": "N", "currency": "usd", "base_cents": 1}"#).0 == .created)
            #expect(try await post(client, "/v1/plans/\(code)/versions", #"{"name": "N", "currency": "eur", "base_cents": 1}"#).0 == .created)
            let (dryStatus, dry) = try await post(client, "/v1/plans/\(code)/migrations", #"{"from_version": 1, "to_version": 3, "dry_run": true}"#)
            #expect(dryStatus == .ok && (dry["moved"] as? [Any])?.isEmpty == true && dry["dry_run"] as? Bool == true)
            let (missing, why) = try await post(client, "/v1/plans/\(code)/migrations", #"{"from_version": 9, "to_version": 1}"#)
            #expect(missing == .badRequest && errorField(why) == "from_version")
            // Version 1 is in EUR (plan() writes eur), version 2 in USD.
            let (mixed, because) = try await post(client, "/v1/plans/\(code)/migrations", #"{"from_version": 1, "to_version": 2}"#)
            #expect(mixed == .conflict && errorField(because) == "to_version")
            let tenant = try await createTenant(client)
            #expect(
                try await post(client, "/v1/plans/\(code)/migrations", #"{"from_version": 1, "to_version": 3}"#, token: tenant.key).0 == .forbidden)
            #expect(try await post(client, "/v1/plans/test-none-\(run)/migrations", #"{"from_version": 1, "to_version": 2}"#).0 == .notFound)
        }
    }
}
