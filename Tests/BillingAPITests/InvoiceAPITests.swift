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

@Suite("Billing API: invoices")
struct InvoiceAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    @Test("Stripe's error text reaches the admin only; a tenant key sees that the sync failed, without Stripe's ids or paths")
    func stripeErrorsHiddenFromTenants() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, name: "Hidden Internals", taxRateBps: 725)
            let invoice = UUID()
            let stripeError = "No such customer: 'cus_Q1x9'; POST /v1/invoices (request req_8JkL)"
            try await pool.query(
                """
                INSERT INTO invoices (id, tenant_id, number, period_start, period_end, subtotal_cents, tax_rate_bps, tax_cents,
                                      total_cents, issued_at, due_at, as_of, stripe_status, stripe_attempts, stripe_error)
                VALUES ($1, $2, $3, now() - interval '30 days', now(), 100, 0, 0, 100, now(), now() + interval '30 days', now(),
                        'failed', 8, $4)
                """, [invoice, UUID(uuidString: tenant.id)!, "INV-2097-\(Int.random(in: 100_000...999_999))", stripeError])
            for (token, sees) in [(tenant.key, false), (adminToken, true)] {
                for uri in ["/v1/invoices/\(invoice)", "/v1/invoices?tenant_id=\(tenant.id)"] {
                    let text = try await client.execute(uri: uri, method: .get, headers: bearer(token)) { response in
                        #expect(response.status == .ok)
                        return String(buffer: response.body)
                    }
                    #expect(text.contains("cus_Q1x9") == sees, "\(uri): \(text)")
                    #expect(text.contains("req_8JkL") == sees, "\(uri): \(text)")
                    #expect(text.contains("\"failed\""), "\(uri): \(text)")
                }
            }
        }
        await pool.close()
    }

    @Test("an invoice as JSON with its lines, and as a PDF whose text holds the number and total; others' invoices are 404")
    func jsonAndPDF() async throws {
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        try await app().test(.router) { client in
            let tenant = try await createTenant(client, name: "Acme Estimating", taxRateBps: 725)
            let other = try await createTenant(client, name: "Other", taxRateBps: 725)
            let invoice = UUID()
            let number = "INV-2098-\(String(Int.random(in: 100_000...999_999)))"
            try await pool.query(
                """
                INSERT INTO invoices (id, tenant_id, number, period_start, period_end, subtotal_cents, tax_rate_bps, tax_cents,
                                      total_cents, issued_at, due_at, as_of, customer_name, customer_email)
                VALUES ($1, $2, $3, '2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z', 136900, 725, 9925, 146825, now(), now() + interval '14 days', now(),
                        'Acme Estimating', 'ap@tenant.test')
                """, [invoice, UUID(uuidString: tenant.id)!, number])
            // Renamed since: the issued invoice's PDF keeps the name it was issued to.
            try await client.execute(
                uri: "/v1/tenants/\(tenant.id)", method: .patch, headers: bearer(tenant.key), body: ByteBuffer(string: #"{"name": "Renamed Co"}"#)
            ) { #expect($0.status == .ok) }
            try await pool.query(
                """
                INSERT INTO invoice_lines (invoice_id, position, kind, metric, description, quantity, unit_price_cents, amount_cents) VALUES
                  ($1, 1, 'base', NULL, 'Professional plan', 1, 99900, 99900),
                  ($1, 2, 'overage', 'api_calls', 'api_calls over quota', 4625, 8, 37000)
                """, [invoice])
            try await client.execute(uri: "/v1/invoices/\(invoice)", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .ok)
                let body = try json(response)
                #expect(body["number"] as? String == number)
                #expect(body["total_cents"] as? Int == 146_825)
                let lines = try #require(body["lines"] as? [[String: Any]])
                #expect(lines.map { $0["kind"] as? String } == ["base", "overage"])
                #expect(lines.map { $0["quantity"] as? String } == ["1", "4625"])
                #expect(lines.map { $0["unit_price_cents"] as? String } == ["99900", "8"])
                let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
                let issued = try style.parse(try #require(body["issued_at"] as? String))
                let due = try style.parse(try #require(body["due_at"] as? String))
                #expect(due.timeIntervalSince(issued) == 14 * 86_400)
            }
            let pdf = try await client.execute(uri: "/v1/invoices/\(invoice).pdf", method: .get, headers: bearer(tenant.key)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/pdf")
                return Data(response.body.readableBytesView)
            }
            #expect(pdf.starts(with: Data("%PDF-".utf8)))
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("api-\(UUID()).pdf").path
            #expect(FileManager.default.createFile(atPath: path, contents: pdf))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let text = try await TestEnvironment.output(of: "/usr/bin/pdftotext", [path, "-"])
            #expect(text.contains(number))
            #expect(text.contains("$1,468.25"))
            #expect(text.contains("Acme Estimating") && !text.contains("Renamed Co"), "\(text)")
            #expect(text.contains("Due "))
            for uri in ["/v1/invoices/\(invoice)", "/v1/invoices/\(invoice).pdf"] {
                try await client.execute(uri: uri, method: .get, headers: bearer(other.key)) { response in
                    #expect(response.status == .notFound)
                }
            }
            try await client.execute(uri: "/v1/invoices", method: .get, headers: bearer(tenant.key)) { response in
                let data = try json(response)["data"] as? [Any]
                #expect(data?.count == 1)
            }
        }
        await pool.close()
    }
}
