import Crypto
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

@Suite("Billing API: Stripe webhooks")
struct StripeWebhookTests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    func signed(_ body: String, at timestamp: Int64, secret: String = stripeWebhookSecret) -> HTTPFields {
        let mac = StripeWebhookSignature.mac(secret: secret, timestamp: timestamp, body: Array(body.utf8))
        let hex = mac.map { String(format: "%02x", $0) }.joined()
        return [HTTPField.Name("Stripe-Signature")!: "t=\(timestamp),v1=\(hex)", .contentType: "application/json"]
    }

    @Test("the signature is checked (forged, stale and missing refused); a replayed event id is ignored")
    func verification() throws {
        let verifier = StripeWebhookSignature(secret: "whsec_a")
        let body = Array(#"{"id":"evt_1"}"#.utf8)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let mac = StripeWebhookSignature.mac(secret: "whsec_a", timestamp: 1_800_000_000, body: body).map { String(format: "%02x", $0) }.joined()
        try verifier.verify(header: "t=1800000000,v1=\(mac)", body: body, now: now)
        try verifier.verify(header: "t=1800000000,v1=00,v1=\(mac)", body: body, now: now.addingTimeInterval(299))
        #expect(throws: StripeWebhookSignature.Failure.stale) {
            try verifier.verify(header: "t=1800000000,v1=\(mac)", body: body, now: now.addingTimeInterval(301))
        }
        #expect(throws: StripeWebhookSignature.Failure.mismatch) {
            try verifier.verify(header: "t=1800000000,v1=\(mac)", body: body + [0x20], now: now)
        }
        #expect(throws: StripeWebhookSignature.Failure.mismatch) {
            try StripeWebhookSignature(secret: "whsec_b").verify(header: "t=1800000000,v1=\(mac)", body: body, now: now)
        }
        #expect(throws: StripeWebhookSignature.Failure.malformed) { try verifier.verify(header: nil, body: body, now: now) }
        #expect(throws: StripeWebhookSignature.Failure.malformed) { try verifier.verify(header: "t=1800000000", body: body, now: now) }
    }

    @Test("a signed event holding a NUL character is stored (as U+FFFD), not a 500; a body over the limit is a 413")
    func oddBodies() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        let id = "evt_nul_\(UUID().uuidString)"
        let body = #"{"id": "\#(id)", "type": "customer.updated", "data": {"object": {"description": "a\u0000b"}}}"#
        let now = Int64(Date().timeIntervalSince1970)
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(body, at: now), body: ByteBuffer(string: body)) {
                response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
            }
            // In the id, a NUL is refused: stored cut short at it, "evt_X\0a" and then "evt_X\0b"
            // were one event, the second acknowledged as a replay and dropped.
            let cut = #"{"id": "evt_cut_\#(UUID().uuidString)\u0000a", "type": "customer.updated", "data": {}}"#
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(cut, at: now), body: ByteBuffer(string: cut)) {
                response in
                #expect(response.status == .badRequest)
                let field = (try json(response)["error"] as? [String: Any])?["field"] as? String
                #expect(field == "id")
            }
            let huge = #"{"id": "evt_big", "type": "x", "pad": ""# + String(repeating: "x", count: 2 << 20) + #""}"#
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(huge, at: now), body: ByteBuffer(string: huge)) {
                response in
                #expect(response.status == .contentTooLarge)
            }
        }
        let stored = try await pool.query(
            "SELECT payload #>> '{data,object,description}' FROM stripe_webhook_events WHERE event_id = $1", [id]
        ).first?.text(0)
        #expect(stored == "a\u{FFFD}b")
        try await pool.query("DELETE FROM stripe_webhook_events WHERE event_id = $1", [id])
        await pool.close()
    }

    @Test("a signed invoice.paid is stored once and the Invoicer marks our invoice paid")
    func invoicePaid() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        let tenant = try await pool.query("INSERT INTO tenants (name, billing_email) VALUES ('Payer', 'ap@payer.test') RETURNING id")[0]
            .decode(0, as: UUID.self)
        let invoice = UUID()
        try await pool.query(
            """
            INSERT INTO invoices (id, tenant_id, number, period_start, period_end, subtotal_cents, tax_rate_bps, tax_cents,
                                  total_cents, issued_at, due_at, as_of)
            VALUES ($1, $2, $3, '2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z', 100, 0, 0, 100, now(), now() + interval '30 days', now())
            """, [invoice, tenant, "INV-2097-\(String(Int.random(in: 100_000...999_999)))"])
        let eventID = "evt_\(UUID().uuidString)"
        let body =
            #"{"id": "\#(eventID)", "type": "invoice.paid", "data": {"object": {"id": "in_test", "status": "paid", "metadata": {"tally_invoice_id": "\#(invoice.uuidString.lowercased())"}}}}"#
        let now = Int64(Date().timeIntervalSince1970)
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(body, at: now), body: ByteBuffer(string: body)) {
                response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#""duplicate":false"#))
            }
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(body, at: now), body: ByteBuffer(string: body)) {
                response in
                #expect(String(buffer: response.body).contains(#""duplicate":true"#))
            }
            for headers in [signed(body, at: now - 600), signed(body, at: now, secret: "whsec_forged"), [.contentType: "application/json"]] {
                try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest)
                }
            }
        }
        // The running Invoicer applies it.
        let deadline = ContinuousClock.now + .seconds(120)
        var status = ""
        while ContinuousClock.now < deadline {
            status = try await pool.query("SELECT status FROM invoices WHERE id = $1", [invoice])[0].decode(0, as: String.self)
            if status == "paid" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(status == "paid")
        #expect(try await pool.query("SELECT stripe_invoice_status FROM invoices WHERE id = $1", [invoice])[0].text(0) == "paid")
        // A payment failure delivered after the payment (Stripe does not order its events):
        // applied, but no "payment failed" email for an invoice that is paid, and Stripe's
        // status stays paid.
        let lateID = "evt_\(UUID().uuidString)"
        let late =
            #"{"id": "\#(lateID)", "type": "invoice.payment_failed", "data": {"object": {"id": "in_test", "status": "open", "metadata": {"tally_invoice_id": "\#(invoice.uuidString.lowercased())"}}}}"#
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/stripe/webhook", method: .post, headers: signed(late, at: Int64(Date().timeIntervalSince1970)),
                body: ByteBuffer(string: late)
            ) { response in #expect(response.status == .ok) }
        }
        let applied = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < applied,
            try await pool.query("SELECT processed_at IS NULL FROM stripe_webhook_events WHERE event_id = $1", [lateID])[0].decode(0, as: Bool.self)
        {
            try await Task.sleep(for: .milliseconds(200))
        }
        let failures = try await pool.query(
            "SELECT count(*) FROM outbox WHERE routing_key = 'invoice.payment_failed' AND body ->> 'invoice_id' = $1",
            [invoice.uuidString.lowercased()])
        #expect(try failures[0].decode(0, as: Int.self) == 0)
        #expect(try await pool.query("SELECT stripe_invoice_status FROM invoices WHERE id = $1", [invoice])[0].text(0) == "paid")
        await pool.close()
    }

    @Test(
        "signed card, subscription and payment-failure events are applied by the running Invoicer: cards kept as brand and last4, a Stripe cancellation at period end ends ours at our period's end, a failed payment goes to billing.events"
    )
    func subscriptionAndCardEvents() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let customer = "cus_t\(suffix)", stripeSubscription = "sub_t\(suffix)", card = "pm_t\(suffix)"
        let tenant = try await pool.query(
            "INSERT INTO tenants (name, billing_email, stripe_customer_id, payment_provider) VALUES ('Carded', 'ap@carded.test', $1, 'stripe') RETURNING id",
            [customer])[0].decode(0, as: UUID.self)
        // Started Sept 1 (monthly): a period containing today is open; September is invoiced.
        let subscription = try await pool.query(
            """
            INSERT INTO subscriptions (tenant_id, started_at, anchor, stripe_subscription_id)
            VALUES ($1, '2026-09-01T00:00:00Z', '2026-09-01T00:00:00Z', $2) RETURNING id
            """, [tenant, stripeSubscription])[0].decode(0, as: UUID.self)
        try await pool.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, 'starter', 1, '2026-09-01T00:00:00Z', 'start', '2026-09-01T00:00:00Z')
            """, [subscription])
        let invoice = UUID()
        try await pool.query(
            """
            INSERT INTO invoices (id, tenant_id, subscription_id, number, period_start, period_end, subtotal_cents, tax_rate_bps,
                                  tax_cents, total_cents, issued_at, due_at, as_of, stripe_invoice_id)
            VALUES ($1, $2, $3, $4, '2026-09-01T00:00:00Z', '2026-10-01T00:00:00Z', 29900, 0, 0, 29900, now(), now() + interval '30 days', now(), $5)
            """, [invoice, tenant, subscription, "INV-2098-\(String(Int.random(in: 100_000...999_999)))", "in_t\(suffix)"])

        func event(_ type: String, _ object: String) -> String {
            #"{"id": "evt_\#(UUID().uuidString)", "type": "\#(type)", "data": {"object": \#(object)}}"#
        }
        let attached = event(
            "payment_method.attached",
            #"{"id": "\#(card)", "object": "payment_method", "type": "card", "customer": "\#(customer)", "card": {"brand": "mastercard", "last4": "4444", "exp_month": 3, "exp_year": 2031}}"#
        )
        let canceling = event(
            "customer.subscription.updated",
            #"{"id": "\#(stripeSubscription)", "object": "subscription", "status": "active", "cancel_at_period_end": true}"#)
        let failed = event("invoice.payment_failed", #"{"id": "in_t\#(suffix)", "object": "invoice"}"#)
        let now = Int64(Date().timeIntervalSince1970)
        try await app().test(.router) { client in
            for body in [attached, canceling, failed] {
                try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(body, at: now), body: ByteBuffer(string: body)) {
                    response in
                    #expect(response.status == .ok)
                }
            }
        }
        try await waitUntil("the card is recorded") {
            try await pool.query("SELECT count(*) FROM payment_methods WHERE provider_id = $1", [card])[0].decode(0, as: Int.self) == 1
        }
        let stored = try await pool.query(
            "SELECT tenant_id, brand, last4::text, exp_month::int, exp_year::int FROM payment_methods WHERE provider_id = $1", [card])[0]
        #expect(try stored.decode(0, as: UUID.self) == tenant)
        #expect(stored.text(1) == "mastercard")
        #expect(stored.text(2) == "4444")
        #expect(stored.text(3) == "3")
        #expect(stored.text(4) == "2031")
        try await waitUntil("the subscription ends") {
            try await pool.query("SELECT ends_at IS NOT NULL FROM subscriptions WHERE id = $1", [subscription])[0].decode(0, as: Bool.self)
        }
        // At the end of our period containing now (periods run from the 1st, monthly).
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let month = calendar.date(from: calendar.dateComponents([.year, .month], from: TestClock.now()))!
        let endsAt = try await pool.query("SELECT ends_at FROM subscriptions WHERE id = $1", [subscription])[0].decode(0, as: Date.self)
        #expect(endsAt == calendar.date(byAdding: .month, value: 1, to: month))
        try await waitUntil("invoice.payment_failed is in the outbox") {
            try await pool.query(
                "SELECT count(*) FROM outbox WHERE routing_key = 'invoice.payment_failed' AND body ->> 'invoice_id' = $1",
                [invoice.uuidString.lowercased()])[0].decode(0, as: Int.self) == 1
        }

        let detached = event("payment_method.detached", #"{"id": "\#(card)", "object": "payment_method", "type": "card", "customer": null}"#)
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/stripe/webhook", method: .post, headers: signed(detached, at: now), body: ByteBuffer(string: detached)
            ) { response in
                #expect(response.status == .ok)
            }
        }
        try await waitUntil("the card is removed") {
            try await pool.query("SELECT count(*) FROM payment_methods WHERE provider_id = $1", [card])[0].decode(0, as: Int.self) == 0
        }
        // An update of the card delivered after its detachment (Stripe does not order its
        // deliveries, and Invoicers apply events side by side) does not bring it back.
        let lateID = "evt_late_\(UUID().uuidString)"
        let late =
            #"{"id": "\#(lateID)", "type": "payment_method.updated", "data": {"object": {"id": "\#(card)", "object": "payment_method", "type": "card", "customer": "\#(customer)", "card": {"brand": "mastercard", "last4": "4444", "exp_month": 4, "exp_year": 2032}}}}"#
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(late, at: now), body: ByteBuffer(string: late)) {
                response in
                #expect(response.status == .ok)
            }
        }
        try await waitUntil("the late update applied") {
            try await pool.query("SELECT processed_at IS NOT NULL FROM stripe_webhook_events WHERE event_id = $1", [lateID]).first?.decode(
                0, as: Bool.self) == true
        }
        #expect(try await pool.query("SELECT count(*) FROM payment_methods WHERE provider_id = $1", [card])[0].decode(0, as: Int.self) == 0)
        await pool.close()
    }

    /// Polls until `condition` holds; a guard against hanging, not a performance bound.
    func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("gave up waiting for \(what)")
    }
}
