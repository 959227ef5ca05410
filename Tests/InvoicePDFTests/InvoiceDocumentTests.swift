import BillingEngine
import Foundation
import Invoicing
import TallyRuntime
import TallyStore
import TallyTestSupport
import Testing

@testable import InvoicePDF

@Suite("Invoice PDF")
struct InvoiceDocumentTests {
    let invoice = InvoiceView(
        id: UUID(), number: "INV-2026-000042", status: "open", kind: "period", tenantID: UUID(), subscriptionID: UUID(),
        currency: "usd", periodStart: Date(timeIntervalSince1970: 1_790_000_000), periodEnd: Date(timeIntervalSince1970: 1_792_592_000),
        subtotalCents: 12_345_678, taxRateBps: 725, taxCents: 895_062, totalCents: 13_240_740, issuedAt: Date(timeIntervalSince1970: 1_792_600_000),
        lines: [
            .init(kind: "base", metric: nil, description: "Enterprise plan", quantity: "1", unitPriceCents: "299900", amountCents: 299_900),
            .init(
                kind: "overage", metric: "api_calls", description: "api_calls over quota", quantity: "24091556", unitPriceCents: "0.5",
                amountCents: 12_045_778),
        ])
    let seller = InvoiceDocument.Party(name: "Tally Billing", email: "billing@tally.localhost")
    let customer = InvoiceDocument.Party(name: "Acme Estimating", email: "ap@acme.test")

    /// The text pdftotext reads from the PDF, optionally from a crop box (points from the top left).
    static func text(of bytes: [UInt8], layout: Bool = true, crop: (x: Int, width: Int)? = nil) async throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("invoice-\(UUID()).pdf").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        var arguments = layout ? ["-layout"] : []
        if let crop { arguments += ["-x", "\(crop.x)", "-y", "0", "-W", "\(crop.width)", "-H", "842"] }
        return try await TestEnvironment.output(of: "/usr/bin/pdftotext", arguments + [path, "-"])
    }

    /// Runs of whitespace (line breaks from wrapping, page breaks, layout padding) as one space.
    static func normalized(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

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
        #expect(InvoiceDocument.unitPrice("-400") == "-$4.00")
        #expect(InvoiceDocument.percent(725) == "7.25%")
        #expect(InvoiceDocument.percent(750) == "7.5%")
        #expect(InvoiceDocument.percent(700) == "7%")
        #expect(InvoiceDocument.percent(5) == "0.05%")
    }

    @Test("pdftotext reads back the number, the parties, every line and the total")
    func textRecovered() async throws {
        let text = try await Self.text(of: try InvoiceDocument(invoice: invoice, seller: seller, customer: customer).render())
        for expected in [
            "INV-2026-000042", "Tally Billing", "Acme Estimating", "Enterprise plan", "$2,999.00", "$0.005", "24,091,556",
            "$120,457.78", "Subtotal", "$123,456.78", "Tax (7.25%)", "$8,950.62", "Total", "$132,407.40", "Page 1 of 1",
            // Issued Oct 21, 2026 16:26:40 UTC; no due date given: the default 30 days later.
            "Issued Oct 21, 2026", "Due Nov 20, 2026",
        ] {
            #expect(text.contains(expected), "missing \(expected) in:\n\(text)")
        }
    }

    @Test("an adjustment invoice says so, and which period's late usage it bills")
    func adjustmentTitle() async throws {
        let adjustment = InvoiceView(
            id: UUID(), number: "INV-2026-000043", status: "open", kind: "adjustment", tenantID: UUID(), subscriptionID: UUID(),
            currency: "usd", periodStart: Date(timeIntervalSince1970: 1_790_000_000), periodEnd: Date(timeIntervalSince1970: 1_792_592_000),
            subtotalCents: 10_000, taxRateBps: 0, taxCents: 0, totalCents: 10_000, issuedAt: Date(timeIntervalSince1970: 1_792_600_000),
            lines: [
                .init(
                    kind: "adjustment", metric: "estimates", description: "estimates: late usage", quantity: "20", unitPriceCents: "500",
                    amountCents: 10_000)
            ])
        let text = try await Self.text(of: try InvoiceDocument(invoice: adjustment, seller: seller, customer: customer).render())
        #expect(text.contains("ADJUSTMENT INVOICE"))
        // The period starts and ends at 14:13:20 UTC, so the times are shown.
        #expect(text.contains("Late usage of Sep 21, 2026 14:13:20 – Oct 21, 2026 14:13:20 UTC"), "\(text)")
        #expect(text.contains("$100.00"))
        // Negative: a credit note, nothing due.
        let credit = InvoiceView(
            id: UUID(), number: "INV-2026-000044", status: "open", kind: "adjustment", tenantID: UUID(), subscriptionID: UUID(),
            currency: "usd", periodStart: adjustment.periodStart, periodEnd: adjustment.periodEnd, subtotalCents: -866, taxRateBps: 0, taxCents: 0,
            totalCents: -866, issuedAt: adjustment.issuedAt,
            lines: [
                .init(
                    kind: "adjustment", metric: "seats", description: "seats: lowered by late usage", quantity: "1", unitPriceCents: "-866",
                    amountCents: -866)
            ])
        let credited = try await Self.text(of: try InvoiceDocument(invoice: credit, seller: seller, customer: customer).render())
        #expect(credited.contains("CREDIT NOTE") && !credited.contains("ADJUSTMENT INVOICE"), "\(credited)")
        #expect(credited.contains("Nothing to pay: $8.66 is credited to your account") && !credited.contains("Due "), "\(credited)")
        #expect(credited.contains("Total credited"))
    }

    @Test("amounts in the invoice's currency: its symbol and minor-unit digits (JPY has none, KWD three)")
    func currencies() async throws {
        #expect(InvoiceDocument.money(123_456, currency: "eur") == "€1,234.56")
        #expect(InvoiceDocument.money(123_456, currency: "jpy") == "¥123,456")
        #expect(InvoiceDocument.money(-5, currency: "jpy") == "-¥5")
        #expect(InvoiceDocument.money(123_456, currency: "kwd") == "KWD 123.456")
        #expect(InvoiceDocument.money(5, currency: "chf") == "CHF 0.05")
        #expect(InvoiceDocument.unitPrice("5", currency: "jpy") == "¥5")
        #expect(InvoiceDocument.unitPrice("0.25", currency: "jpy") == "¥0.25")
        #expect(InvoiceDocument.unitPrice("0.5", currency: "eur") == "€0.005")
        for (currency, expected) in [("eur", ["€100.00", "€5.00", "Amounts in EUR"]), ("jpy", ["¥10,000", "¥500", "Amounts in JPY"])] {
            let invoice = InvoiceView(
                id: UUID(), number: "INV-2026-000044", status: "open", kind: "period", tenantID: UUID(), subscriptionID: UUID(),
                currency: currency, periodStart: Date(timeIntervalSince1970: 1_790_000_000), periodEnd: Date(timeIntervalSince1970: 1_792_592_000),
                subtotalCents: 10_000, taxRateBps: 0, taxCents: 0, totalCents: 10_000, issuedAt: Date(timeIntervalSince1970: 1_792_600_000),
                lines: [
                    .init(kind: "overage", metric: "api_calls", description: "api_calls", quantity: "20", unitPriceCents: "500", amountCents: 10_000)
                ])
            let text = try await Self.text(of: try InvoiceDocument(invoice: invoice, seller: seller, customer: customer).render())
            for figure in expected { #expect(text.contains(figure), "missing \(figure) in:\n\(text)") }
        }
    }

    @Test(
        "120 lines and a very long description: several pages, each with the number and the table header, every description whole, every row adding up"
    )
    func paginated() async throws {
        let day = { (y: Int64, m: Int64, d: Int64) in Instant(year: y, month: m, day: d).date }
        let long =
            "Professional plan, Nov 16, 2026 19:22 – Dec 16, 2026 UTC (prorated) — "
            + (1...40).map { "segment note \($0) of a description that keeps going" }.joined(separator: ", ")
        var lines: [InvoiceView.Line] = [
            .init(kind: "base", metric: nil, description: long, quantity: "1", unitPriceCents: "49950", amountCents: 49_950)
        ]
        for index in 1..<120 {
            let used = 1_000 + index * 137
            let rate = ["8", "0.5", "400", "12.3456"][index % 4]
            let quantity = Quantity(units: Int64(used - 1_000))
            let amount = try UnitPrice(parsing: rate).charge(for: quantity)
            lines.append(
                .init(
                    kind: "overage", metric: "metric_\(index)",
                    description: "metric_\(index): \(Quantity(units: Int64(used)).groupedDescription) used, 1,000 included",
                    quantity: quantity.description, unitPriceCents: rate, amountCents: amount.value))
        }
        lines.append(
            .init(
                kind: "adjustment", metric: "users", description: "users: late usage for Oct 16 – Nov 16, 2026 — 9 used, 12 billed before",
                quantity: "-3", unitPriceCents: "800", amountCents: -2_400))
        let subtotal = lines.reduce(0) { $0 + $1.amountCents }
        let view = InvoiceView(
            id: UUID(), number: "INV-2026-000777", status: "open", kind: "period", tenantID: UUID(), subscriptionID: UUID(),
            currency: "usd", periodStart: day(2026, 10, 16), periodEnd: day(2026, 11, 16), subtotalCents: subtotal, taxRateBps: 0,
            taxCents: 0, totalCents: subtotal, issuedAt: day(2026, 11, 30), dueAt: day(2026, 12, 30), lines: lines)
        let sellerWithAddress = InvoiceDocument.Party(
            name: "Tally Billing Inc.", email: "billing@tally.localhost", addressLines: ["1 Market Street, Suite 300", "San Francisco, CA 94105"],
            taxID: "US 12-3456789")
        let customerWithAddress = InvoiceDocument.Party(
            name: "Acme Estimating GmbH", email: "ap@acme.test", addressLines: ["Hauptstraße 5", "10115 Berlin"], taxID: "DE123456789")
        let bytes = try InvoiceDocument(invoice: view, seller: sellerWithAddress, customer: customerWithAddress).render()

        let text = try await Self.text(of: bytes)
        let pages = text.split(separator: "\u{0C}", omittingEmptySubsequences: true).filter { !$0.allSatisfy(\.isWhitespace) }
        #expect(pages.count >= 3, "\(text)")
        for (index, page) in pages.enumerated() {
            #expect(page.contains("INV-2026-000777"), "page \(index + 1)")
            #expect(page.contains("Page \(index + 1) of \(pages.count)"), "page \(index + 1)")
        }
        for expected in [
            "Issued Nov 30, 2026", "Due Dec 30, 2026", "Period Oct 16 – Nov 16, 2026", "Tally Billing Inc.", "1 Market Street, Suite 300",
            "San Francisco, CA 94105", "Tax ID: US 12-3456789", "Acme Estimating GmbH", "Hauptstraße 5", "Tax ID: DE123456789",
            "Total", InvoiceDocument.dollars(subtotal),
        ] {
            #expect(text.contains(expected), "missing \(expected)")
        }

        // The description column alone, whitespace normalized: every description is there, whole.
        let descriptions = Self.normalized(try await Self.text(of: bytes, crop: (0, 318)))
        for line in lines {
            #expect(descriptions.contains(Self.normalized(line.description)), "cut or lost: \(line.description)")
        }

        // The figure columns alone: one row of quantity, unit price and amount per line, in order,
        // the table header on every page that holds rows, and quantity × unit price = amount
        // to within the cent an overage rounds up.
        let figures = try await Self.text(of: bytes, crop: (318, 240))
        var rows: [(quantity: Decimal, unitPrice: Decimal, amount: Decimal)] = []
        for page in figures.split(separator: "\u{0C}") {
            let before = rows.count
            for row in page.split(separator: "\n") {
                let fields = row.split(whereSeparator: \.isWhitespace)
                guard fields.count == 3, let parsed = Self.figures(fields.map(String.init)) else { continue }
                rows.append(parsed)
            }
            if rows.count > before {
                #expect(page.contains("Quantity") && page.contains("Unit price") && page.contains("Amount"), "a page of rows without the header")
            }
        }
        try #require(rows.count == lines.count, "\(figures)")
        for (row, line) in zip(rows, lines) {
            #expect(row.amount == Decimal(line.amountCents) / 100, "\(line.description)")
            let difference = row.quantity * row.unitPrice - row.amount
            #expect(difference > -0.01 && difference <= 0, "\(row) for \(line.description)")
        }
    }

    /// `1,207`, `$0.005`, `-$24.00` as exact decimals; nil unless all three are figures.
    static func figures(_ fields: [String]) -> (quantity: Decimal, unitPrice: Decimal, amount: Decimal)? {
        func number(_ text: String, dollars: Bool) -> Decimal? {
            let negative = text.hasPrefix("-")
            var digits = negative ? String(text.dropFirst()) : text
            guard digits.hasPrefix("$") == dollars else { return nil }
            if dollars { digits.removeFirst() }
            digits.removeAll { $0 == "," }
            guard !digits.isEmpty, digits.allSatisfy({ $0.isNumber || $0 == "." }),
                let value = Decimal(string: digits, locale: Locale(identifier: "en_US_POSIX"))
            else { return nil }
            return negative ? -value : value
        }
        guard let quantity = number(fields[0], dollars: false), let unitPrice = number(fields[1], dollars: true),
            let amount = number(fields[2], dollars: true)
        else { return nil }
        return (quantity, unitPrice, amount)
    }

    @Test("wrapping breaks at spaces within the width, breaks only an over-wide word between characters, and keeps every character")
    func wrapping() {
        // Every character 5 points wide: 20 points hold 4 characters.
        let layout = InvoiceLayout(document: InvoiceDocument(invoice: invoice, seller: seller, customer: customer)) { text, _ in
            Double(text.count) * 5
        }
        let font = InvoiceLayout.rowFont
        #expect(layout.wrap("a bb ccc dddd", width: 20, font: font) == ["a bb", "ccc", "dddd"])
        #expect(layout.wrap("abcdefghij k", width: 20, font: font) == ["abcd", "efgh", "ij k"])
        #expect(layout.wrap("  spaced \n out  ", width: 100, font: font) == ["spaced out"])
        #expect(layout.wrap("", width: 20, font: font) == [""])
    }

    @Test("columns move left as far as the widest figures need: a huge amount does not run into its unit price; usual invoices keep theirs")
    func columnsFitFigures() {
        let measure: (String, Font) -> Double = { text, _ in Double(text.count) * 5 }
        let usual = InvoiceLayout(document: InvoiceDocument(invoice: invoice, seller: seller, customer: customer), measure: measure)
        #expect(usual.unitPriceRight == InvoiceLayout.unitPriceRight && usual.quantityRight == InvoiceLayout.quantityRight)
        #expect(usual.descriptionWidth == InvoiceLayout.descriptionWidth)
        let huge = InvoiceView(
            id: UUID(), number: "INV-2026-000045", status: "open", kind: "period", tenantID: UUID(), subscriptionID: UUID(), currency: "usd",
            periodStart: invoice.periodStart, periodEnd: invoice.periodEnd, subtotalCents: 99_999_999_999, taxRateBps: 0, taxCents: 0,
            totalCents: 99_999_999_999, issuedAt: invoice.issuedAt,
            lines: [
                .init(
                    kind: "base", metric: nil, description: "Base", quantity: "1,000,000.5", unitPriceCents: "99999999999",
                    amountCents: 99_999_999_999)
            ])
        let layout = InvoiceLayout(document: InvoiceDocument(invoice: huge, seller: seller, customer: customer), measure: measure)
        let amount = measure(InvoiceDocument.money(99_999_999_999, currency: "usd"), InvoiceLayout.rowFont)
        let unitPrice = measure(InvoiceDocument.unitPrice("99999999999", currency: "usd"), InvoiceLayout.rowFont)
        let quantity = measure(InvoiceText.grouped("1,000,000.5"), InvoiceLayout.rowFont)
        // Each right-aligned figure ends before the next one begins, and the description before the quantity.
        #expect(layout.unitPriceRight <= InvoiceLayout.amountRight - amount - InvoiceLayout.columnGap)
        #expect(layout.quantityRight <= layout.unitPriceRight - unitPrice - InvoiceLayout.columnGap)
        #expect(InvoiceLayout.margin + layout.descriptionWidth <= layout.quantityRight - quantity)
    }

    @Test("the seller comes from the environment: address lines split at ';', tax id optional, defaults otherwise")
    func sellerConfiguration() throws {
        let configured = try InvoiceSeller(
            reader: ConfigurationReader(environment: [
                "TALLY_SELLER_NAME": "Tally Billing Inc.", "TALLY_SELLER_EMAIL": "ar@tally.example",
                "TALLY_SELLER_ADDRESS": " 1 Market Street ;San Francisco, CA 94105;; USA ", "TALLY_SELLER_TAX_ID": "US 12-3456789",
            ]))
        #expect(
            configured.party
                == InvoiceDocument.Party(
                    name: "Tally Billing Inc.", email: "ar@tally.example", addressLines: ["1 Market Street", "San Francisco, CA 94105", "USA"],
                    taxID: "US 12-3456789"))
        let defaults = try InvoiceSeller(reader: ConfigurationReader(environment: [:]))
        #expect(defaults == InvoiceSeller())
        #expect(defaults.party == InvoiceDocument.Party(name: "Tally", email: "billing@tally.localhost"))
        #expect(InvoiceSeller.keys.map(\.name) == ["TALLY_SELLER_NAME", "TALLY_SELLER_EMAIL", "TALLY_SELLER_ADDRESS", "TALLY_SELLER_TAX_ID"])
    }
}
