import BillingEngine
import Foundation
import TallyStore

/// A font of the document: DejaVu Sans at a size, regular or bold.
struct Font: Hashable {
    let size: Double
    let bold: Bool

    static func regular(_ size: Double) -> Font { Font(size: size, bold: false) }
    static func bold(_ size: Double) -> Font { Font(size: size, bold: true) }
}

/// One thing drawn on a page, in PDF points from the page's top left (`y` is a
/// text baseline or a rule's height).
enum Mark: Equatable {
    case text(String, x: Double, y: Double, font: Font, alignRight: Bool)
    case rule(from: Double, to: Double, y: Double)
}

/// Lays an invoice out on A4 pages before anything is drawn, so every page can say
/// "Page N of M". Page 1 carries the title, number, dates, seller and customer; every
/// page carries the title and number and, while lines remain, the table header. A
/// description wraps within its column at spaces (a single word wider than the
/// column breaks between characters); nothing is ever cut off. A row starts on a new
/// page when it does not fit on the current one.
struct InvoiceLayout {
    static let width = 595.0
    static let height = 842.0
    static let margin = 56.0
    /// Where text may go down to; below it is the footer.
    static let contentBottom = height - margin - 16
    static let footerBaseline = height - 36

    /// Right edges of the number columns, and the description column's width, for usual
    /// figures; wider figures move the columns left (`init`).
    static let quantityRight = 382.0
    static let unitPriceRight = 462.0
    static let amountRight = width - margin
    static let descriptionWidth = 256.0
    /// The least room left between two columns.
    static let columnGap = 12.0
    /// Seller and customer sit side by side on page 1, each in a column this wide.
    static let partyWidth = 230.0
    static let customerLeft = 310.0

    static let rowFont = Font.regular(9)
    static let rowLeading = 12.0
    static let rowGap = 4.0

    let document: InvoiceDocument
    /// The advance width of a text in a font, in points.
    let measure: (String, Font) -> Double
    private var pages: [[Mark]] = [[]]
    private var y = margin + 10
    /// Where the rows of the current page begin (just below its table header).
    private var firstRowBaseline = 0.0

    /// This invoice's columns: the usual ones, moved left as far as its widest amount,
    /// unit price and quantity need (an amount of $999,999,999.99 ran into its unit price).
    let quantityRight: Double
    let unitPriceRight: Double
    let descriptionWidth: Double

    init(document: InvoiceDocument, measure: @escaping (String, Font) -> Double) {
        self.document = document
        self.measure = measure
        let lines = document.invoice.lines
        let currency = document.invoice.currency
        func widest(_ header: String, _ figures: [String]) -> Double {
            figures.reduce(measure(header, .bold(10))) { max($0, measure($1, Self.rowFont)) }
        }
        let amountWidth = widest("Amount", lines.map { InvoiceDocument.money($0.amountCents, currency: currency) })
        unitPriceRight = min(Self.unitPriceRight, Self.amountRight - amountWidth - Self.columnGap)
        let unitPriceWidth = widest("Unit price", lines.map { InvoiceDocument.unitPrice($0.unitPriceCents, currency: currency) })
        quantityRight = min(Self.quantityRight, unitPriceRight - unitPriceWidth - Self.columnGap)
        let quantityWidth = widest("Quantity", lines.map { InvoiceText.grouped($0.quantity) })
        descriptionWidth = max(80, min(Self.descriptionWidth, quantityRight - quantityWidth - Self.columnGap - Self.margin))
    }

    /// The document's pages, each with its footer.
    static func pages(of document: InvoiceDocument, measure: @escaping (String, Font) -> Double) -> [[Mark]] {
        var layout = InvoiceLayout(document: document, measure: measure)
        layout.firstPage()
        layout.tableHeader()
        for line in document.invoice.lines { layout.row(line) }
        layout.totals()
        return layout.pages.enumerated().map { index, marks in
            marks + layout.footer(page: index + 1, of: layout.pages.count)
        }
    }

    private var invoice: InvoiceView { document.invoice }
    private var title: String { invoice.isCredit ? "CREDIT NOTE" : invoice.kind == "adjustment" ? "ADJUSTMENT INVOICE" : "INVOICE" }

    // MARK: Blocks

    private mutating func firstPage() {
        text(title, x: Self.margin, font: .bold(22))
        text(invoice.number, x: Self.amountRight, font: .bold(14), alignRight: true)
        y += 26
        let period = Period(start: Instant(invoice.periodStart), end: Instant(invoice.periodEnd))
        text("Issued \(InvoiceText.day(Instant(invoice.issuedAt)))", x: Self.margin, font: .regular(10))
        y += 13
        if invoice.isCredit {
            let credit = InvoiceDocument.money(-invoice.totalCents, currency: invoice.currency)
            text("Nothing to pay: \(credit) is credited to your account", x: Self.margin, font: .bold(10))
        } else if invoice.isPaid {
            text("Paid. Thank you.", x: Self.margin, font: .bold(10))
        } else {
            text("Due \(InvoiceText.day(Instant(invoice.dueAt)))", x: Self.margin, font: .bold(10))
        }
        y += 13
        let periodLine = "\(invoice.kind == "adjustment" ? "Late usage of" : "Period") \(InvoiceText.period(period))"
        for piece in wrap(periodLine, width: Self.amountRight - Self.margin, font: .regular(10)) {
            text(piece, x: Self.margin, font: .regular(10))
            y += 13
        }
        y += 12
        let top = y
        party("From", document.seller, x: Self.margin)
        let sellerBottom = y
        y = top
        party("Bill to", document.customer, x: Self.customerLeft)
        y = max(y, sellerBottom) + 16
    }

    /// A heading and the party's lines, each wrapped to the party column at `x`.
    private mutating func party(_ heading: String, _ party: InvoiceDocument.Party, x: Double) {
        text(heading, x: x, font: .bold(9))
        y += 13
        for line in party.printedLines {
            for piece in wrap(line, width: Self.partyWidth, font: .regular(10)) {
                text(piece, x: x, font: .regular(10))
                y += 13
            }
        }
    }

    private mutating func tableHeader() {
        let font = Font.bold(10)
        text("Description", x: Self.margin, font: font)
        text("Quantity", x: quantityRight, font: font, alignRight: true)
        text("Unit price", x: unitPriceRight, font: font, alignRight: true)
        text("Amount", x: Self.amountRight, font: font, alignRight: true)
        rule(from: Self.margin, to: Self.amountRight, at: y + 5)
        y += 19
        firstRowBaseline = y
    }

    /// One invoice line: the wrapped description, and the figures on its first line. A
    /// row that does not fit moves to a new page, unless it is the page's first row
    /// (taller than a page: it then runs on over the next pages).
    private mutating func row(_ line: InvoiceView.Line) {
        let pieces = wrap(line.description, width: descriptionWidth, font: Self.rowFont)
        let height = Double(pieces.count - 1) * Self.rowLeading
        if y + height > Self.contentBottom, y > firstRowBaseline { continuation(withTable: true) }
        text(InvoiceText.grouped(line.quantity), x: quantityRight, font: Self.rowFont, alignRight: true)
        text(InvoiceDocument.unitPrice(line.unitPriceCents, currency: invoice.currency), x: unitPriceRight, font: Self.rowFont, alignRight: true)
        text(InvoiceDocument.money(line.amountCents, currency: invoice.currency), x: Self.amountRight, font: Self.rowFont, alignRight: true)
        for piece in pieces {
            if y > Self.contentBottom { continuation(withTable: true) }
            text(piece, x: Self.margin, font: Self.rowFont)
            y += Self.rowLeading
        }
        y += Self.rowGap
    }

    /// Subtotal, tax and total, their labels right-aligned clear of the widest figure.
    private mutating func totals() {
        if y + 80 > Self.contentBottom { continuation(withTable: false) }
        let rows = [
            ("Subtotal", InvoiceDocument.money(invoice.subtotalCents, currency: invoice.currency), Font.regular(10)),
            (
                "Tax (\(InvoiceDocument.percent(invoice.taxRateBps)))", InvoiceDocument.money(invoice.taxCents, currency: invoice.currency),
                .regular(10)
            ),
            (invoice.isCredit ? "Total credited" : "Total", InvoiceDocument.money(invoice.totalCents, currency: invoice.currency), .bold(12)),
        ]
        let widest = rows.map { measure($0.1, $0.2) }.max() ?? 0
        let labelRight = min(unitPriceRight, Self.amountRight - widest - 14)
        let widestLabel = rows.map { measure($0.0, $0.2) }.max() ?? 0
        rule(from: min(quantityRight - 40, labelRight - widestLabel), to: Self.amountRight, at: y - 8)
        y += 8
        for (label, amount, font) in rows {
            text(label, x: labelRight, font: font, alignRight: true)
            text(amount, x: Self.amountRight, font: font, alignRight: true)
            y += font.bold ? 18 : 15
        }
        y += 14
        text("Amounts in \(invoice.currency.uppercased()). Invoice \(invoice.id.uuidString.lowercased()).", x: Self.margin, font: .regular(8))
    }

    /// A new page headed by the title and number, and by the table header while lines remain.
    private mutating func continuation(withTable: Bool) {
        pages.append([])
        y = Self.margin + 10
        text(title, x: Self.margin, font: .bold(14))
        text(invoice.number, x: Self.amountRight, font: .bold(14), alignRight: true)
        y += 28
        if withTable { tableHeader() }
    }

    private func footer(page: Int, of count: Int) -> [Mark] {
        [
            .text(invoice.number, x: Self.margin, y: Self.footerBaseline, font: .regular(8), alignRight: false),
            .text("Page \(page) of \(count)", x: Self.amountRight, y: Self.footerBaseline, font: .regular(8), alignRight: true),
        ]
    }

    // MARK: Primitives

    private mutating func text(_ string: String, x: Double, at baseline: Double? = nil, font: Font, alignRight: Bool = false) {
        pages[pages.count - 1].append(.text(string, x: x, y: baseline ?? y, font: font, alignRight: alignRight))
    }

    private mutating func rule(from left: Double, to right: Double, at height: Double) {
        pages[pages.count - 1].append(.rule(from: left, to: right, y: height))
    }

    /// `text` in lines no wider than `width`, broken at whitespace; a word wider than
    /// `width` on its own is broken between characters. Every character is kept.
    func wrap(_ text: String, width: Double, font: Font) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(whereSeparator: \.isWhitespace).map(String.init) {
            let candidate = current.isEmpty ? word : current + " " + word
            if measure(candidate, font) <= width {
                current = candidate
                continue
            }
            if !current.isEmpty { lines.append(current) }
            current = ""
            for character in word {
                if !current.isEmpty, measure(current + String(character), font) > width {
                    lines.append(current)
                    current = ""
                }
                current.append(character)
            }
        }
        lines.append(current)
        return lines
    }
}

extension InvoiceDocument.Party {
    /// What the document prints for the party, top to bottom.
    var printedLines: [String] {
        [name] + addressLines + [email] + (taxID.map { ["Tax ID: \($0)"] } ?? [])
    }
}
