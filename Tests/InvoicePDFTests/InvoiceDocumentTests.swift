import Foundation
import InvoicePDF
import Invoicing
import TallyTestSupport
import Testing

@Suite("Invoice PDF")
struct InvoiceDocumentTests {
    let invoice = InvoiceView(
        id: UUID(), number: "INV-2026-000042", status: "open", kind: "period", tenantID: UUID(), subscriptionID: UUID(),
        currency: "usd", periodStart: Date(timeIntervalSince1970: 1_790_000_000), periodEnd: Date(timeIntervalSince1970: 1_792_592_000),
        subtotalCents: 12_345_678, taxRateBps: 725, taxCents: 895_062, totalCents: 13_240_740, issuedAt: Date(timeIntervalSince1970: 1_792_600_000),
        lines: [
            .init(kind: "base", metric: nil, description: "Enterprise plan", quantity: "1", unitPriceCents: "299900", amountCents: 299_900),
            .init(kind: "overage", metric: "api_calls", description: "api_calls over quota", quantity: "24091556", unitPriceCents: "0.5", amountCents: 12_045_778),
        ])

    @Test("dollars with thousands separators, fractional unit prices, tax percentages")
    func formats() {
        #expect(InvoiceDocument.dollars(0) == "$0.00")
        #expect(InvoiceDocument.dollars(5) == "$0.05")
        #expect(InvoiceDocument.dollars(123_456_789) == "$1,234,567.89")
        #expect(InvoiceDocument.dollars(-1_000) == "-$10.00")
        #expect(InvoiceDocument.unitPrice("10") == "$0.10")
        #expect(InvoiceDocument.unitPrice("0.5") == "$0.005")
        #expect(InvoiceDocument.unitPrice("29900") == "$299.00")
        #expect(InvoiceDocument.unitPrice("12345678") == "$123,456.78")
        #expect(InvoiceDocument.percent(725) == "7.25%")
        #expect(InvoiceDocument.percent(750) == "7.5%")
        #expect(InvoiceDocument.percent(700) == "7%")
        #expect(InvoiceDocument.percent(5) == "0.05%")
    }

    @Test("pdftotext reads back the number, the parties, every line and the total")
    func textRecovered() throws {
        let document = InvoiceDocument(
            invoice: invoice, seller: .init(name: "Tally Billing", email: "billing@tally.localhost"),
            customer: .init(name: "Acme Estimating", email: "ap@acme.test"))
        let bytes = try document.render()
        #expect(bytes.starts(with: Array("%PDF-".utf8)))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("invoice-\(UUID()).pdf").path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = try TestEnvironment.output(of: "/usr/bin/pdftotext", ["-layout", path, "-"])
        for expected in [
            "INV-2026-000042", "Tally Billing", "Acme Estimating", "Enterprise plan", "$2,999.00", "$0.005", "24091556",
            "$120,457.78", "Subtotal", "$123,456.78", "Tax (7.25%)", "$8,950.62", "Total", "$132,407.40",
        ] {
            #expect(text.contains(expected), "missing \(expected) in:\n\(text)")
        }
    }

    @Test("an adjustment invoice says so, and which period's late usage it bills")
    func adjustmentTitle() throws {
        let adjustment = InvoiceView(
            id: UUID(), number: "INV-2026-000043", status: "open", kind: "adjustment", tenantID: UUID(), subscriptionID: UUID(),
            currency: "usd", periodStart: Date(timeIntervalSince1970: 1_790_000_000), periodEnd: Date(timeIntervalSince1970: 1_792_592_000),
            subtotalCents: 10_000, taxRateBps: 0, taxCents: 0, totalCents: 10_000, issuedAt: Date(timeIntervalSince1970: 1_792_600_000),
            lines: [.init(kind: "adjustment", metric: "estimates", description: "estimates: late usage", quantity: "70", unitPriceCents: "500", amountCents: 10_000)])
        let bytes = try InvoiceDocument(
            invoice: adjustment, seller: .init(name: "Tally Billing", email: "billing@tally.localhost"),
            customer: .init(name: "Acme Estimating", email: "ap@acme.test")
        ).render()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("invoice-\(UUID()).pdf").path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = try TestEnvironment.output(of: "/usr/bin/pdftotext", ["-layout", path, "-"])
        #expect(text.contains("ADJUSTMENT INVOICE"))
        #expect(text.contains("Late usage of 2026-09-21 – 2026-10-21"))
        #expect(text.contains("$100.00"))
    }
}
