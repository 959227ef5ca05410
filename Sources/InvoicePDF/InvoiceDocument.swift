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

    /// An amount in `currency`'s minor unit, for people: its symbol, thousands separators
    /// and its minor-unit digits — `123456` is `$1,234.56` in USD, `¥123,456` in JPY,
    /// `€1,234.56` in EUR; negative with a minus. An unknown code is written before the
    /// amount, with two digits.
    public static func money(_ minor: Int64, currency code: String) -> String {
        let currency = Currency(code: code)
        let magnitude = Cents(Int64(clamping: minor.magnitude))
        let text = currency?.format(magnitude) ?? Currency.usd.format(magnitude)
        return (minor < 0 ? "-" : "") + (currency?.symbol ?? code.uppercased() + " ") + text
    }

    /// A unit price given in (possibly fractional) minor units, in the major unit with at
    /// least the currency's minor digits: in USD "10" → "$0.10", "0.5" → "$0.005",
    /// "29900" → "$299.00"; in JPY "5" → "¥5", "0.25" → "¥0.25".
    public static func unitPrice(_ minor: String, currency code: String) -> String {
        let currency = Currency(code: code)
        let digits = currency?.minorUnitDigits ?? 2
        guard var value = Decimal(string: minor, locale: Locale(identifier: "en_US_POSIX")) else { return minor }
        let negative = value < 0
        if negative { value = -value }
        for _ in 0..<digits { value /= 10 }
        let parts = NSDecimalNumber(decimal: value).stringValue.split(separator: ".", maxSplits: 1)
        var fraction = parts.count > 1 ? String(parts[1]) : ""
        while fraction.count < digits { fraction += "0" }
        let symbol = currency?.symbol ?? code.uppercased() + " "
        return (negative ? "-" : "") + symbol + InvoiceText.grouped(String(parts[0])) + (fraction.isEmpty ? "" : "." + fraction)
    }

    /// Cents as US dollars (`money(_:currency:)` in USD): 123456789 → "$1,234,567.89".
    public static func dollars(_ cents: Int64) -> String { money(cents, currency: "usd") }

    /// A unit price in US cents, in dollars (`unitPrice(_:currency:)` in USD).
    public static func unitPrice(_ cents: String) -> String { unitPrice(cents, currency: "usd") }

    /// Basis points as a percentage: 725 → "7.25%", 750 → "7.5%", 700 → "7%".
    public static func percent(_ basisPoints: Int) -> String { BasisPoints.percentText(basisPoints) }
}

/// cairo could not produce the document.
public struct PDFError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { "PDF rendering failed: \(message)" }
}
