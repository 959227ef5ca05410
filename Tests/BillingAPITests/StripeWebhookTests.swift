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
        #expect(throws: StripeWebhookSignature.Failure.stale) { try verifier.verify(header: "t=1800000000,v1=\(mac)", body: body, now: now.addingTimeInterval(301)) }
        #expect(throws: StripeWebhookSignature.Failure.mismatch) { try verifier.verify(header: "t=1800000000,v1=\(mac)", body: body + [0x20], now: now) }
        #expect(throws: StripeWebhookSignature.Failure.mismatch) {
            try StripeWebhookSignature(secret: "whsec_b").verify(header: "t=1800000000,v1=\(mac)", body: body, now: now)
        }
        #expect(throws: StripeWebhookSignature.Failure.malformed) { try verifier.verify(header: nil, body: body, now: now) }
        #expect(throws: StripeWebhookSignature.Failure.malformed) { try verifier.verify(header: "t=1800000000", body: body, now: now) }
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
                                  total_cents, issued_at, as_of)
            VALUES ($1, $2, $3, '2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z', 100, 0, 0, 100, now(), now())
            """, [invoice, tenant, "INV-2097-\(String(Int.random(in: 100_000...999_999)))"])
        let eventID = "evt_\(UUID().uuidString)"
        let body = #"{"id": "\#(eventID)", "type": "invoice.paid", "data": {"object": {"id": "in_test", "metadata": {"tally_invoice_id": "\#(invoice.uuidString.lowercased())"}}}}"#
        let now = Int64(Date().timeIntervalSince1970)
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(body, at: now), body: ByteBuffer(string: body)) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#""duplicate":false"#))
            }
            try await client.execute(uri: "/v1/stripe/webhook", method: .post, headers: signed(body, at: now), body: ByteBuffer(string: body)) { response in
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
        await pool.close()
    }
}
