import BillingEngine
import Foundation
import TallyStore

/// An invoice as a PDF (SPEC §1: finance gets every invoice as a PDF), drawn with
/// cairo: real text (a reader, a screen reader or `pdftotext` gets the words back, not
/// an image), A4, seller and customer with address and tax id, number, issue and due
/// dates, period, one row per line with its whole description, quantity, unit price and
/// amount, then subtotal, tax and total in dollars; as many pages as the lines need,
/// each numbered "Page N of M" (see `InvoiceLayout`).
public struct InvoiceDocument: Sendable {
    /// Who issues or receives the invoice, as printed.
    public struct Party: Sendable, Equatable {
        public let name: String
        public let email: String
        /// Postal address, one entry per printed line.
        public let addressLines: [String]
        /// A VAT, GST or EIN number, printed as "Tax ID: …".
        public let taxID: String?

        public init(name: String, email: String, addressLines: [String] = [], taxID: String? = nil) {
            self.name = name
            self.email = email
            self.addressLines = addressLines
            self.taxID = taxID
        }
    }

    public let invoice: InvoiceView
    public let seller: Party
    public let customer: Party

    public init(invoice: InvoiceView, seller: Party, customer: Party) {
        self.invoice = invoice
        self.seller = seller
        self.customer = customer
    }

    /// The PDF bytes: laid out first, so the page count is known, then drawn.
    public func render() throws(PDFError) -> [UInt8] {
        let canvas = PDFCanvas(width: InvoiceLayout.width, height: InvoiceLayout.height, title: invoice.number)
        for page in InvoiceLayout.pages(of: self, measure: canvas.advance) {
            canvas.draw(page)
        }
        return try canvas.finish()
    }

    /// Cents as dollars with thousands separators: 123456789 → "$1,234,567.89"; negative with a minus.
    public static func dollars(_ cents: Int64) -> String {
        let sign = cents < 0 ? "-" : ""
        let magnitude = cents.magnitude
        let fraction = magnitude % 100
        return "\(sign)$\(InvoiceText.grouped(String(magnitude / 100))).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    /// A unit price given in (possibly fractional) cents, in dollars: "10" → "$0.10",
    /// "0.5" → "$0.005", "29900" → "$299.00".
    public static func unitPrice(_ cents: String) -> String {
        guard let value = Decimal(string: cents, locale: Locale(identifier: "en_US_POSIX")) else { return cents }
        let negative = value < 0
        let text = NSDecimalNumber(decimal: (negative ? -value : value) / 100).stringValue
        let parts = text.split(separator: ".", maxSplits: 1)
        var fraction = parts.count > 1 ? String(parts[1]) : ""
        while fraction.count < 2 { fraction += "0" }
        return (negative ? "-" : "") + "$" + InvoiceText.grouped(String(parts[0])) + "." + fraction
    }

    /// Basis points as a percentage: 725 → "7.25%", 750 → "7.5%", 700 → "7%".
    public static func percent(_ basisPoints: Int) -> String { BasisPoints.percentText(basisPoints) }
}

/// cairo could not produce the document.
public struct PDFError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { "PDF rendering failed: \(message)" }
}
