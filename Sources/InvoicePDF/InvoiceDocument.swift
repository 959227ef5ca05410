import BillingEngine
import CCairo
import Foundation
import Invoicing

/// An invoice as a PDF (SPEC §1: finance gets every invoice as a PDF), drawn with
/// cairo: real text (a reader, a screen reader or `pdftotext` gets the words back, not
/// an image), A4, seller and customer, number, issue date, period, one row per line
/// with quantity, unit price and amount, then subtotal, tax and total in dollars.
public struct InvoiceDocument: Sendable {
    public struct Party: Sendable {
        public let name: String
        public let email: String

        public init(name: String, email: String) {
            self.name = name
            self.email = email
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

    /// The PDF bytes.
    public func render() throws -> [UInt8] {
        let sink = ByteSink()
        let surface = cairo_pdf_surface_create_for_stream(
            { closure, data, length in
                guard let closure, let data else { return CAIRO_STATUS_WRITE_ERROR }
                Unmanaged<ByteSink>.fromOpaque(closure).takeUnretainedValue().bytes
                    .append(contentsOf: UnsafeBufferPointer(start: data, count: Int(length)))
                return CAIRO_STATUS_SUCCESS
            }, Unmanaged.passUnretained(sink).toOpaque(), Self.width, Self.height)
        let context = cairo_create(surface)
        var page = Page(context: context)
        draw(on: &page)
        cairo_destroy(context)
        cairo_surface_finish(surface)
        let status = cairo_surface_status(surface)
        cairo_surface_destroy(surface)
        guard status == CAIRO_STATUS_SUCCESS else {
            throw PDFError(message: String(cString: cairo_status_to_string(status)))
        }
        return sink.bytes
    }

    static let width = 595.0
    static let height = 842.0
    static let margin = 56.0

    private func draw(on page: inout Page) {
        page.text(invoice.kind == "adjustment" ? "ADJUSTMENT INVOICE" : "INVOICE", x: Self.margin, size: 22, bold: true)
        page.text(invoice.number, x: Self.width - Self.margin, size: 14, bold: true, alignRight: true)
        page.advance(28)
        page.text("From: \(seller.name) <\(seller.email)>", x: Self.margin, size: 10)
        page.text("Issued \(Self.day(invoice.issuedAt))", x: Self.width - Self.margin, size: 10, alignRight: true)
        page.advance(15)
        page.text("Bill to: \(customer.name) <\(customer.email)>", x: Self.margin, size: 10)
        page.text(
            "\(invoice.kind == "adjustment" ? "Late usage of" : "Period") \(Self.day(invoice.periodStart)) – \(Self.day(invoice.periodEnd))",
            x: Self.width - Self.margin, size: 10, alignRight: true)
        page.advance(34)
        let columns = [Self.margin, 330.0, 420.0, Self.width - Self.margin]
        page.text("Description", x: columns[0], size: 10, bold: true)
        page.text("Quantity", x: columns[1], size: 10, bold: true, alignRight: true)
        page.text("Unit price", x: columns[2], size: 10, bold: true, alignRight: true)
        page.text("Amount", x: columns[3], size: 10, bold: true, alignRight: true)
        page.rule(from: Self.margin, to: Self.width - Self.margin, below: 5)
        page.advance(18)
        for line in invoice.lines {
            page.text(String(line.description.prefix(48)), x: columns[0], size: 9)
            page.text(line.quantity, x: columns[1], size: 9, alignRight: true)
            page.text(Self.unitPrice(line.unitPriceCents), x: columns[2], size: 9, alignRight: true)
            page.text(Self.dollars(line.amountCents), x: columns[3], size: 9, alignRight: true)
            page.advance(15)
            if page.y > Self.height - 140 {
                page.newPage()
            }
        }
        page.rule(from: 330, to: Self.width - Self.margin, below: -8)
        page.advance(8)
        let tax = "Tax (\(Self.percent(invoice.taxRateBps)))"
        for (label, cents, bold) in [("Subtotal", invoice.subtotalCents, false), (tax, invoice.taxCents, false), ("Total", invoice.totalCents, true)] {
            page.text(label, x: columns[2], size: bold ? 12 : 10, bold: bold, alignRight: true)
            page.text(Self.dollars(cents), x: columns[3], size: bold ? 12 : 10, bold: bold, alignRight: true)
            page.advance(bold ? 18 : 15)
        }
        page.advance(20)
        page.text("Amounts in \(invoice.currency.uppercased()). Invoice \(invoice.id.uuidString.lowercased()).", x: Self.margin, size: 8)
    }

    /// Cents as dollars with thousands separators: 123456789 → "$1,234,567.89"; negative with a minus.
    public static func dollars(_ cents: Int64) -> String {
        let sign = cents < 0 ? "-" : ""
        let magnitude = cents.magnitude
        let whole = String(magnitude / 100)
        var grouped = ""
        for (index, character) in whole.enumerated() {
            if index > 0, (whole.count - index) % 3 == 0 { grouped.append(",") }
            grouped.append(character)
        }
        let fraction = magnitude % 100
        return "\(sign)$\(grouped).\(fraction < 10 ? "0" : "")\(fraction)"
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
        let whole = dollars((Int64(parts[0]) ?? 0) * 100).dropLast(3)  // "$1,234" of "$1,234.00"
        return (negative ? "-" : "") + whole + "." + fraction
    }

    /// Basis points as a percentage: 725 → "7.25%", 750 → "7.5%", 700 → "7%".
    public static func percent(_ basisPoints: Int) -> String { BasisPoints.percentText(basisPoints) }

    static func day(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day())
    }
}

/// Where the PDF stream lands; touched only inside `render` on one thread.
private final class ByteSink {
    var bytes: [UInt8] = []
}

/// The cursor on the page being drawn.
private struct Page {
    let context: OpaquePointer?
    var y = InvoiceDocument.margin + 10

    init(context: OpaquePointer?) {
        self.context = context
    }

    mutating func advance(_ points: Double) { y += points }

    mutating func newPage() {
        cairo_show_page(context)
        y = InvoiceDocument.margin + 10
    }

    func text(_ text: String, x: Double, size: Double, bold: Bool = false, alignRight: Bool = false) {
        cairo_select_font_face(context, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(context, size)
        var extents = cairo_text_extents_t()
        cairo_text_extents(context, text, &extents)
        cairo_move_to(context, alignRight ? x - extents.x_advance : x, y)
        cairo_show_text(context, text)
    }

    func rule(from left: Double, to right: Double, below offset: Double) {
        cairo_set_line_width(context, 0.6)
        cairo_move_to(context, left, y + offset)
        cairo_line_to(context, right, y + offset)
        cairo_stroke(context)
    }
}

/// cairo could not produce the document.
public struct PDFError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { "PDF rendering failed: \(message)" }
}
