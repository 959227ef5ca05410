import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresClient
import TallyHTTP
import TallyTestSupport
import Testing
import UsageEvents

@testable import BillingAPI

@Suite("Billing API: subscriptions")
struct SubscriptionAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    func post(_ client: some TestClientProtocol, _ uri: String, _ key: String, _ body: String) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await client.execute(uri: uri, method: .post, headers: bearer(key), body: ByteBuffer(string: body)) { response in
            (response.status, try json(response))
        }
    }

    /// A USD plan of the test's own with a 14-day trial and no charges: its code. Archive it at the end.
    func trialPlan(_ client: some TestClientProtocol, prefix: String) async throws -> String {
        let code = prefix + UUID().uuidString.prefix(8).lowercased()
        let (status, body) = try await post(
            client, "/v1/plans", adminToken,
            #"{"code": "\#(code)", "name": "Trial plan", "currency": "usd", "base_cents": 1000, "trial_days": 14, "charges": []}"#)
        #expect(status == .created, "\(body)")
        return code
    }

    func field(_ body: [String: Any]) -> String? { (body["error"] as? [String: Any])?["field"] as? String }

    func code(_ body: [String: Any]) -> String? { (body["error"] as? [String: Any])?["code"] as? String }

    @Test("a tenant key acts from now on; the admin token backdates; no time outside years 2000–9999 is accepted")
    func backdating() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let now = TestClock.now()
            let hourAgo = RFC3339.format(now.addingTimeInterval(-3600))
            // A tenant key cannot start, change or cancel in the past…
            var (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "starter", "start": "\#(hourAgo)"}"#)
            #expect(status == .forbidden)
            #expect(code(body) == "BACKDATING_NOT_ALLOWED")
            #expect(field(body) == "start")
            for year in ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "10000-01-01T00:00:00Z"] {
                (status, body) = try await post(
                    client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(tenant.id)", "plan": "starter", "start": "\#(year)"}"#)
                #expect(status == .badRequest, "\(year)")
                #expect(field(body) == "start", "\(year)")
            }
            // …a minute of clock skew is allowed.
            let minuteAgo = RFC3339.format(now.addingTimeInterval(-60))
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "starter", "start": "\#(minuteAgo)"}"#)
            #expect(status == .created)
            let id = try #require(body["id"] as? String)
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(hourAgo)"}"#)
            #expect(status == .forbidden)
            #expect(field(body) == "at")
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "professional", "at": "\#(hourAgo)"}"#)
            #expect(status == .forbidden)
            #expect(field(body) == "at")
            // The admin token may backdate (SPEC §4: any instant in years 2000–9999).
            let other = try await createTenant(client)
            let longAgo = RFC3339.format(now.addingTimeInterval(-400 * 86_400))
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(other.id)", "plan": "starter", "start": "\#(longAgo)"}"#)
            #expect(status == .created)
            // Reads too are bounded: no `at` before 2000, nor one whose period ends after 9999
            // (its end was written as year 10000, not RFC 3339).
            // A subscription from midnight on the 1st has a period ending at 10000-01-01T00:00:00Z
            // exactly (the bound rounded to it, and let it through). The 1st of next month, so it
            // has no period due meanwhile; canceled before its start below.
            var utc = Calendar(identifier: .gregorian)
            utc.timeZone = TimeZone(identifier: "UTC")!
            let thisMonth = utc.date(from: utc.dateComponents([.year, .month], from: now))!
            let firstOfNextMonth = RFC3339.format(utc.date(byAdding: .month, value: 1, to: thisMonth)!)
            let midnight = try await createTenant(client)
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken,
                #"{"tenant_id": "\#(midnight.id)", "plan": "starter", "start": "\#(firstOfNextMonth)"}"#)
            #expect(status == .created, "\(body)")
            let midnightSubscription = try #require(body["id"] as? String)
            for (tenant, at) in [(other.id, "0013-01-03T00:00:00Z"), (other.id, "9999-12-31T23:59:59Z"), (midnight.id, "9999-12-31T23:59:59Z")] {
                try await client.execute(
                    uri: "/v1/invoices/upcoming?tenant_id=\(tenant)&at=\(at)", method: .get, headers: bearer(adminToken)
                ) { response in
                    #expect(response.status == .badRequest, "\(at)")
                    let field = (try json(response)["error"] as? [String: Any])?["field"] as? String
                    #expect(field == "at", "\(at)")
                }
            }
            // Canceled before its start, it never starts (no period left behind for others' runs).
            (status, body) = try await post(client, "/v1/subscriptions/\(midnightSubscription)/cancel", adminToken, "{}")
            #expect(status == .ok && body["ends_at"] as? String == body["started_at"] as? String, "\(body)")
        }
    }

    @Test("a change, cancel or migration whose period boundary falls in year 10000 is a 400 naming `at`, and nothing is stored")
    func nothingBeyondYear9999() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            // The test's own plan, version 2 beside version 1, both in USD.
            let code = "test-y10k-" + UUID().uuidString.prefix(8).lowercased()
            var (status, body) = try await post(
                client, "/v1/plans", adminToken, #"{"code": "\#(code)", "name": "Y", "currency": "usd", "base_cents": 1000, "charges": []}"#)
            #expect(status == .created, "\(body)")
            (status, body) = try await post(
                client, "/v1/plans/\(code)/versions", adminToken, #"{"name": "Y2", "currency": "usd", "base_cents": 900}"#)
            #expect(status == .created, "\(body)")
            // Periods from the 20th: the one holding 9999-12-25 ends at 10000-01-20.
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(tenant.id)", "plan": "professional", "start": "9999-11-20T00:00:00Z"}"#)
            #expect(status == .created, "\(body)")
            let id = try #require(body["id"] as? String)
            // A downgrade takes effect at the next period start; a cancel at period end ends there.
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/change", adminToken, #"{"plan": "starter", "at": "9999-12-25T00:00:00Z"}"#)
            #expect(status == .badRequest && field(body) == "at", "\(body)")
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/cancel", adminToken, #"{"at": "9999-12-25T00:00:00Z", "at_period_end": true}"#)
            #expect(status == .badRequest && field(body) == "at", "\(body)")
            // A migration's `at` is bounded like every other time; one whose next period
            // start is past 9999 skips that subscription, saying why.
            let other = try await createTenant(client)
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(other.id)", "plan": "\#(code)", "start": "9999-11-20T00:00:00Z"}"#)
            #expect(status == .created, "\(body)")
            for at in ["10000-01-01T00:00:00Z", "1999-12-31T00:00:00Z"] {
                (status, body) = try await post(
                    client, "/v1/plans/\(code)/migrations", adminToken,
                    #"{"from_version": 2, "to_version": 1, "tenant_id": "\#(other.id)", "at": "\#(at)"}"#)
                #expect(status == .badRequest && field(body) == "at", "\(at): \(body)")
            }
            (status, body) = try await post(
                client, "/v1/plans/\(code)/migrations", adminToken,
                #"{"from_version": 2, "to_version": 1, "tenant_id": "\#(other.id)", "at": "9999-12-25T00:00:00Z"}"#)
            #expect(status == .ok, "\(body)")
            #expect((body["moved"] as? [Any])?.isEmpty == true, "\(body)")
            let skipped = (body["skipped"] as? [[String: Any]]) ?? []
            #expect(skipped.count == 1 && (skipped.first?["reason"] as? String)?.contains("after 9999-12-31") == true, "\(body)")
            // Both tenants' subscriptions still read back, with no change stored.
            for owner in [tenant, other] {
                try await client.execute(uri: "/v1/subscriptions?tenant_id=\(owner.id)", method: .get, headers: bearer(adminToken)) { response in
                    #expect(response.status == .ok)
                    let data = (try json(response)["data"] as? [[String: Any]]) ?? []
                    #expect(data.count == 1 && data.first?["ends_at"].map { $0 is NSNull } != false, "\(data)")
                    #expect(((data.first?["changes"] as? [Any]) ?? []).count <= 1, "\(data)")
                }
            }
            // A trial that would end past 9999 (500 before, its trial_end unreadable).
            let third = try await createTenant(client)
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken,
                #"{"tenant_id": "\#(third.id)", "plan": "starter", "start": "9999-12-30T00:00:00Z", "trial_days": 30}"#)
            #expect(status == .badRequest && field(body) == "trial_days", "\(body)")
            // A first period ending in year 10000 could never be billed: refused, naming what moves it there.
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(third.id)", "plan": "starter", "start": "9999-12-15T00:00:00Z"}"#)
            #expect(status == .badRequest && field(body) == "start", "\(body)")
            #expect((body["error"] as? [String: Any])?["message"].map { "\($0)".contains("10000-01-15") } == true, "\(body)")
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken,
                #"{"tenant_id": "\#(third.id)", "plan": "starter", "start": "9999-12-01T00:00:00Z", "trial_days": 25}"#)
            #expect(status == .badRequest && field(body) == "trial_days", "\(body)")
            #expect(try await post(client, "/v1/plans/\(code)/archive", adminToken, "{}").0 == .ok)
        }
    }

    @Test("instants are written as kept: microseconds when they have them, milliseconds otherwise")
    func microsecondInstants() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            // Tomorrow, at a whole second of the test clock, plus .456789 s (scheduled, then voided).
            let second = (TestClock.now().timeIntervalSince1970 + 86_400).rounded(.down)
            let start = RFC3339.format(Date(timeIntervalSince1970: second + 0.456_789))
            var (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(tenant.id)", "plan": "starter", "start": "\#(start)"}"#)
            #expect(status == .created, "\(body)")
            #expect(body["started_at"] as? String == start, "\(body)")
            let id = try #require(body["id"] as? String)
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/cancel", adminToken, "{}")
            #expect(status == .ok, "\(body)")
            #expect(body["ends_at"] as? String == start)
        }
        #expect(JSONEncoder.instantText(Date(timeIntervalSince1970: 1_795_000_000.456)) == "2026-11-18T11:06:40.456Z")
        #expect(JSONEncoder.instantText(Date(timeIntervalSince1970: 1_795_000_000.456_001)) == "2026-11-18T11:06:40.456001Z")
        #expect(JSONEncoder.instantText(Date(timeIntervalSince1970: 1_795_000_000)) == "2026-11-18T11:06:40.000Z")
    }

    @Test("a subscription that has not started is canceled before it starts (its trial with it) and frees the tenant; one that has started cannot be")
    func cancelBeforeStart() async throws {
        try await app().test(.router) { client in
            let code = try await trialPlan(client, prefix: "test-void-")
            var (status, body): (HTTPResponse.Status, [String: Any])
            let tenant = try await createTenant(client)
            let later = RFC3339.format(TestClock.now().addingTimeInterval(90 * 86_400))
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "\#(code)", "start": "\#(later)"}"#)
            #expect(status == .created)
            let scheduled = try #require(body["id"] as? String)
            // Not started: neither trialing nor active (both were shown before).
            #expect(body["status"] as? String == "scheduled", "\(body)")
            // Before: 409 "is before the subscription started", and the tenant could subscribe to nothing.
            (status, body) = try await post(client, "/v1/subscriptions/\(scheduled)/cancel", tenant.key, "{}")
            #expect(status == .ok, "\(body)")
            #expect(body["status"] as? String == "canceled")
            #expect(body["ends_at"] as? String == body["started_at"] as? String)
            #expect(body["trial_end"] == nil || body["trial_end"] is NSNull, "\(body)")
            #expect(body["current_period"] == nil || body["current_period"] is NSNull, "\(body)")
            // Canceled twice: refused as already canceled.
            (status, _) = try await post(client, "/v1/subscriptions/\(scheduled)/cancel", tenant.key, "{}")
            #expect(status == .conflict)
            // Subscribing now: the voided one neither holds the tenant nor spent its trial.
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "\#(code)"}"#)
            #expect(status == .created, "\(body)")
            #expect(body["status"] as? String == "trialing")
            // Started without a trial: canceling it as of its start (within the tenant's clock
            // skew) would leave its usage unbilled; refused as before.
            let third = try await createTenant(client)
            (status, body) = try await post(client, "/v1/subscriptions", third.key, #"{"plan": "starter"}"#)
            let running = try #require(body["id"] as? String)
            let started = try #require(body["started_at"] as? String)
            (status, body) = try await post(client, "/v1/subscriptions/\(running)/cancel", third.key, #"{"at": "\#(started)"}"#)
            #expect(status == .conflict, "\(body)")
            (status, body) = try await post(client, "/v1/subscriptions/\(running)/cancel", adminToken, #"{"at": "\#(started)"}"#)
            #expect(status == .conflict, "\(body)")
            // At period end, before the start: it never starts either.
            let other = try await createTenant(client)
            (status, body) = try await post(client, "/v1/subscriptions", other.key, #"{"plan": "starter", "start": "\#(later)"}"#)
            let second = try #require(body["id"] as? String)
            (status, body) = try await post(client, "/v1/subscriptions/\(second)/cancel", other.key, #"{"at_period_end": true}"#)
            #expect(status == .ok, "\(body)")
            #expect(body["ends_at"] as? String == body["started_at"] as? String)
            // Set to end at its first period's end before it starts, then canceled now: it
            // never starts (it was a 409 "already set to end"); a later end is refused saying
            // a cancellation only brings the end forward.
            let fourth = try await createTenant(client)
            (status, body) = try await post(client, "/v1/subscriptions", fourth.key, #"{"plan": "starter", "start": "\#(later)"}"#)
            let voided = try #require(body["id"] as? String)
            let inFirstPeriod = RFC3339.format(TestClock.now().addingTimeInterval(95 * 86_400))
            (status, body) = try await post(
                client, "/v1/subscriptions/\(voided)/cancel", fourth.key, #"{"at": "\#(inFirstPeriod)", "at_period_end": true}"#)
            #expect(status == .ok, "\(body)")
            let periodEnd = try #require(body["ends_at"] as? String)
            #expect(periodEnd > later, "\(body)")
            let afterIt = RFC3339.format(TestClock.now().addingTimeInterval(200 * 86_400))
            (status, body) = try await post(client, "/v1/subscriptions/\(voided)/cancel", fourth.key, #"{"at": "\#(afterIt)"}"#)
            #expect(status == .conflict, "\(body)")
            #expect(
                ((body["error"] as? [String: Any])?["message"] as? String)?.contains("can only bring that end forward") == true, "\(body)")
            (status, body) = try await post(client, "/v1/subscriptions/\(voided)/cancel", fourth.key, "{}")
            #expect(status == .ok, "\(body)")
            #expect(body["ends_at"] as? String == body["started_at"] as? String, "\(body)")
            #expect(body["status"] as? String == "canceled", "\(body)")
            #expect(try await post(client, "/v1/plans/\(code)/archive", adminToken, "").0 == .ok)
        }
    }

    @Test("before a scheduled subscription starts, a change (at now, or any time before the start) is to the plan it starts on, downgrade or upgrade")
    func changeBeforeStart() async throws {
        try await app().test(.router) { client in
            var (status, body): (HTTPResponse.Status, [String: Any])
            let tenant = try await createTenant(client)
            let start = TestClock.now().addingTimeInterval(10 * 86_400)
            (status, body) = try await post(
                client, "/v1/subscriptions", tenant.key, #"{"plan": "professional", "start": "\#(RFC3339.format(start))", "trial_days": 0}"#)
            #expect(status == .created, "\(body)")
            #expect(body["status"] as? String == "scheduled", "\(body)")
            let id = try #require(body["id"] as? String)
            let startedAt = try #require(body["started_at"] as? String)
            func changes(_ body: [String: Any]) -> [String] {
                (body["changes"] as? [[String: Any]] ?? []).map { "\($0["kind"] ?? "") \($0["plan"] ?? "") \($0["effective_at"] ?? "")" }
            }
            // A downgrade asked now: it starts on Starter (it was refused as outside the
            // subscription's life, and asked at the start it waited a whole period on Professional).
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "starter"}"#)
            #expect(status == .ok, "\(body)")
            #expect(changes(body) == ["start starter \(startedAt)"], "\(body)")
            // An upgrade asked for a moment before the start: the same.
            let tomorrow = RFC3339.format(TestClock.now().addingTimeInterval(86_400))
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "enterprise", "at": "\#(tomorrow)"}"#)
            #expect(status == .ok, "\(body)")
            #expect(changes(body) == ["start enterprise \(startedAt)"], "\(body)")
            // Asked for a time after the start, a downgrade waits for the next period as always.
            let afterStart = RFC3339.format(start.addingTimeInterval(86_400))
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "starter", "at": "\#(afterStart)"}"#)
            #expect(status == .ok, "\(body)")
            let all = changes(body)
            #expect(all.count == 2 && all.first == "start enterprise \(startedAt)" && all.last?.hasPrefix("downgrade starter ") == true, "\(body)")
            #expect(all.last != "downgrade starter \(startedAt)", "\(body)")
        }
    }

    @Test("a tenant that does not exist is a 404 naming tenant_id: a subscription, the upcoming invoice, a billing run")
    func unknownTenant() async throws {
        try await app().test(.router) { client in
            let unknown = UUID().uuidString
            // It said "No subscription with that id" (and a run answered 202 with nothing due).
            for (uri, body) in [
                ("/v1/subscriptions", #"{"tenant_id": "\#(unknown)", "plan": "starter"}"#),
                ("/v1/billing-runs", #"{"tenant_id": "\#(unknown)"}"#),
            ] {
                let (status, answer) = try await post(client, uri, adminToken, body)
                #expect(status == .notFound, "\(uri) \(answer)")
                #expect(field(answer) == "tenant_id", "\(uri) \(answer)")
                #expect(
                    (answer["error"] as? [String: Any])?["message"] as? String == "No tenant with that id is visible to this API key.",
                    "\(uri) \(answer)")
            }
            try await client.execute(uri: "/v1/invoices/upcoming?tenant_id=\(unknown)", method: .get, headers: bearer(adminToken)) {
                response in
                #expect(response.status == .notFound)
                let answer = try json(response)
                #expect(field(answer) == "tenant_id", "\(answer)")
            }
        }
    }

    @Test("canceled now inside its trial, a subscription ends then, not at the trial's end: the tenant may subscribe again at once (without a trial)")
    func cancelInsideTrial() async throws {
        try await app().test(.router) { client in
            let code = try await trialPlan(client, prefix: "test-trialend-")
            var (status, body): (HTTPResponse.Status, [String: Any])
            let tenant = try await createTenant(client)
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "\#(code)"}"#)
            #expect(status == .created && body["status"] as? String == "trialing", "\(body)")
            let id = try #require(body["id"] as? String)
            let trialEnd = try #require((body["trial_end"] as? String).flatMap(RFC3339.parse))
            let before = TestClock.now()
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/cancel", tenant.key, "{}")
            #expect(status == .ok, "\(body)")
            // Before: ends_at was the trial's end and the status "trialing" for two more weeks.
            #expect(body["status"] as? String == "canceled", "\(body)")
            let endsAt = try #require((body["ends_at"] as? String).flatMap(RFC3339.parse))
            #expect(endsAt >= before.addingTimeInterval(-1) && endsAt < trialEnd, "\(body)")
            // Its trial ended with it: the usage read is no longer the trial's.
            #expect(body["current_period"] == nil || body["current_period"] is NSNull, "\(body)")
            #expect((body["trial_end"] as? String).flatMap(RFC3339.parse) == endsAt, "\(body)")
            try await client.execute(uri: "/v1/usage", method: .get, headers: bearer(tenant.key)) { response in
                let period = try json(response)["period"] as? [String: Any]
                #expect(period?["kind"] as? String == "calendar_month", "\(String(describing: period))")
            }
            // Subscribing again (to pay from now): taken, with no second trial.
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "\#(code)"}"#)
            #expect(status == .created, "\(body)")
            #expect(body["status"] as? String == "active" && (body["trial_end"] == nil || body["trial_end"] is NSNull), "\(body)")
            // The admin token, not naming trial_days, does not give a returning tenant the
            // plan's trial either (it did); naming them grants them.
            let second = try #require(body["id"] as? String)
            #expect(try await post(client, "/v1/subscriptions/\(second)/cancel", adminToken, "{}").0 == .ok)
            (status, body) = try await post(client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(tenant.id)", "plan": "\#(code)"}"#)
            #expect(status == .created && (body["trial_end"] == nil || body["trial_end"] is NSNull), "\(body)")
            let third = try #require(body["id"] as? String)
            #expect(try await post(client, "/v1/subscriptions/\(third)/cancel", adminToken, "{}").0 == .ok)
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(tenant.id)", "plan": "\#(code)", "trial_days": 3}"#)
            #expect(status == .created && body["status"] as? String == "trialing", "\(body)")
            #expect(try await post(client, "/v1/plans/\(code)/archive", adminToken, "").0 == .ok)
        }
    }

    @Test("a tenant key takes the plan's trial once, may shorten it, never lengthen it; the operator grants any")
    func selfServiceTrials() async throws {
        try await app().test(.router) { client in
            let code = try await trialPlan(client, prefix: "test-trial-")
            var (status, body): (HTTPResponse.Status, [String: Any])
            let tenant = try await createTenant(client)
            // Longer than the plan offers: the tenant cannot grant it to itself.
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "\#(code)", "trial_days": 730}"#)
            #expect(status == .forbidden)
            #expect(field(body) == "trial_days")
            #expect(
                (body["error"] as? [String: Any])?["message"] as? String
                    == "a tenant key may shorten the plan's trial (14 days) but not lengthen it; ask the operator (admin token) for a longer one")
            // Shorter is the tenant's choice.
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "\#(code)", "trial_days": 7}"#)
            #expect(status == .created)
            #expect(body["status"] as? String == "trialing")
            let (started, trialEnd) = (try #require(body["started_at"] as? String), try #require(body["trial_end"] as? String))
            #expect(try #require(RFC3339.parse(trialEnd)).timeIntervalSince(try #require(RFC3339.parse(started))) == 7 * 86_400)
            // A tenant that had a subscription (here one the operator started 40 days ago and
            // ended 20 days ago) gets no second trial, asked or by default.
            let returning = try await createTenant(client)
            let now = TestClock.now()
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken,
                #"{"tenant_id": "\#(returning.id)", "plan": "\#(code)", "start": "\#(RFC3339.format(now.addingTimeInterval(-40 * 86_400)))"}"#)
            #expect(status == .created)
            let earlier = try #require(body["id"] as? String)
            (status, body) = try await post(
                client, "/v1/subscriptions/\(earlier)/cancel", adminToken, #"{"at": "\#(RFC3339.format(now.addingTimeInterval(-20 * 86_400)))"}"#)
            #expect(status == .ok)
            (status, body) = try await post(client, "/v1/subscriptions", returning.key, #"{"plan": "\#(code)", "trial_days": 3}"#)
            #expect(status == .forbidden)
            #expect(field(body) == "trial_days")
            (status, body) = try await post(client, "/v1/subscriptions", returning.key, #"{"plan": "\#(code)"}"#)
            #expect(status == .created)
            #expect(body["status"] as? String == "active")
            #expect(body["trial_end"] == nil || body["trial_end"] is NSNull)
            let second = try #require(body["id"] as? String)
            // The operator may grant any trial, to anyone.
            (status, body) = try await post(client, "/v1/subscriptions/\(second)/cancel", adminToken, "{}")
            #expect(status == .ok)
            (status, body) = try await post(
                client, "/v1/subscriptions", adminToken, #"{"tenant_id": "\#(returning.id)", "plan": "\#(code)", "trial_days": 60}"#)
            #expect(status == .created)
            #expect(body["status"] as? String == "trialing")
            (status, _) = try await post(client, "/v1/plans/\(code)/archive", adminToken, "")
            #expect(status == .ok)
        }
    }

    @Test("start, upgrade at once, downgrade at the next period, cancel at period end; invoiced periods are protected")
    func lifecycle() async throws {
        // A common year at least two years ahead: the tenant key acts from now on, and the
        // Jan 31 anchor's next period ends on Feb 28.
        let thisYear = Calendar(identifier: .gregorian).component(.year, from: TestClock.now())
        let year = (thisYear + 2...thisYear + 9).first { !($0 % 4 == 0 && ($0 % 100 != 0 || $0 % 400 == 0)) }!
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            let other = try await createTenant(client)
            var (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "starter", "start": "\#(year)-01-31T00:00:00Z"}"#)
            #expect(status == .created)
            let id = try #require(body["id"] as? String)
            #expect(body["plan"] as? String == "starter")
            #expect(body["interval"] as? String == "month")
            (status, body) = try await post(client, "/v1/subscriptions", tenant.key, #"{"plan": "starter"}"#)
            #expect(status == .conflict)
            #expect(field(body) == "tenant_id")
            (status, body) = try await post(client, "/v1/subscriptions", other.key, #"{"plan": "platinum"}"#)
            #expect(status == .badRequest)
            #expect(field(body) == "plan")
            (status, body) = try await post(client, "/v1/subscriptions", other.key, #"{"plan": "starter", "start": "soon"}"#)
            #expect(field(body) == "start")

            // Upgrade mid-period: at the moment asked. Downgrade: at the next period start (Feb 28 → Mar 31).
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "professional", "at": "\#(year)-02-10T12:00:00Z"}"#)
            #expect(status == .ok)
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "starter", "at": "\#(year)-03-05T00:00:00Z"}"#)
            #expect(status == .ok)
            let changes = try #require(body["changes"] as? [[String: Any]])
            #expect(changes.map { $0["kind"] as? String } == ["start", "upgrade", "downgrade"])
            #expect(
                changes.map { $0["effective_at"] as? String } == [
                    "\(year)-01-31T00:00:00.000Z", "\(year)-02-10T12:00:00.000Z", "\(year)-03-31T00:00:00.000Z",
                ])
            // Another tenant's key cannot see or touch it.
            (status, _) = try await post(client, "/v1/subscriptions/\(id)/cancel", other.key, "{}")
            #expect(status == .notFound)

            // Once February is invoiced, a change inside it is refused with 409 naming the invoice.
            try await pool.query(
                """
                INSERT INTO invoices (tenant_id, subscription_id, number, period_start, period_end, subtotal_cents, tax_rate_bps,
                                      tax_cents, total_cents, issued_at, due_at, as_of)
                VALUES ($1, $2, $3, '\(year)-02-28T00:00:00Z', '\(year)-03-31T00:00:00Z', 100, 0, 0, 100, now(), now() + interval '30 days', now())
                """, [UUID(uuidString: tenant.id)!, UUID(uuidString: id)!, "INV-2099-\(String(Int.random(in: 100_000...999_999)))"])
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/change", tenant.key, #"{"plan": "enterprise", "at": "\#(year)-03-10T00:00:00Z"}"#)
            #expect(status == .conflict)
            let message = (body["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains("already invoiced"))
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(year)-03-15T00:00:00Z"}"#)
            #expect(status == .conflict)

            // A misspelt flag is refused, not dropped (which would cancel on April 10 itself).
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(year)-04-10T00:00:00Z", "at_period_ends": true}"#)
            let misspelt = body["error"] as? [String: Any]
            #expect(status == .badRequest && misspelt?["field"] as? String == "at_period_ends")
            #expect((misspelt?["message"] as? String)?.contains("did you mean at_period_end?") == true, "\(misspelt ?? [:])")

            // Cancel at the end of the period containing April 10: [Mar 31, Apr 30) — the Jan 31 anchor, clamped.
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(year)-04-10T00:00:00Z", "at_period_end": true}"#)
            #expect(status == .ok)
            #expect(body["ends_at"] as? String == "\(year)-04-30T00:00:00.000Z")
            // Set to end at its period end: asked again for the period end, 409 saying so (it
            // said "already canceled" of an active subscription); canceled now, it ends sooner
            // (it could not be brought forward); a later end is refused.
            (status, body) = try await post(
                client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(year)-04-12T00:00:00Z", "at_period_end": true}"#)
            #expect(status == .conflict)
            #expect(((body["error"] as? [String: Any])?["message"] as? String)?.contains("already set to end at \(year)-04-30") == true, "\(body)")
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(year)-04-20T00:00:00Z"}"#)
            #expect(status == .ok, "\(body)")
            #expect(body["ends_at"] as? String == "\(year)-04-20T00:00:00.000Z", "\(body)")
            (status, body) = try await post(client, "/v1/subscriptions/\(id)/cancel", tenant.key, #"{"at": "\#(year)-04-25T00:00:00Z"}"#)
            #expect(status == .conflict, "\(body)")
            try await client.execute(uri: "/v1/subscriptions", method: .get, headers: bearer(tenant.key)) { response in
                let list = try #require(try json(response)["data"] as? [[String: Any]])
                #expect(list.count == 1)
                #expect(list.first?["ends_at"] as? String == "\(year)-04-20T00:00:00.000Z")
            }
        }
        await pool.close()
    }
}
