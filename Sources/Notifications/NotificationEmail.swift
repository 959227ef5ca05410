import BillingEngine
import CurlClient
import Foundation
import InvoicePDF
import Invoicing
import TallyMessaging
import TallyStore

/// The emails a billing event turns into (pure: every input is a parameter): RFC 5322
/// messages with a plain-text body and an HTML alternative, the invoice PDF attached to
/// invoice emails, and a stable `Message-ID` per notification.
///
/// Text that comes from tenants (names) is flattened to one line before it reaches a
/// header: a name holding CR/LF can never add a header.
public struct NotificationEmail: Sendable {
    /// Who sends: the seller on the invoices.
    public let from: MailAddress
    public let sellerName: String

    public init(sellerName: String, sellerEmail: String) {
        self.sellerName = Self.oneLine(sellerName)
        self.from = MailAddress(sellerEmail, displayName: self.sellerName)
    }

    /// A tenant as an email addresses it.
    public struct Recipient: Sendable {
        public let name: String
        public let email: String

        public init(name: String, email: String) {
            self.name = name
            self.email = email
        }
    }

    /// An issued invoice, to finance (a copy, naming the tenant) or to the tenant, with its PDF.
    public func invoice(
        _ invoice: InvoiceView, pdf: [UInt8], tenant: Recipient, to notification: PlannedNotification
    ) -> MailMessage {
        let adjustment = invoice.kind == "adjustment"
        // A negative total is owed to the tenant: a credit note, nothing due (it read
        // "-$8.66 due Jan 1" as if the tenant owed it).
        let credit = invoice.isCredit
        let what = credit ? "Credit note" : adjustment ? "Adjustment invoice" : "Invoice"
        let total = InvoiceDocument.money(invoice.totalCents, currency: invoice.currency)
        let due = Wording.day(invoice.dueAt)
        // Sent again after it was paid (`notifier resend`): it said "due" with the amount.
        let paid = invoice.isPaid
        let owed =
            credit
            ? "\(InvoiceDocument.money(-invoice.totalCents, currency: invoice.currency)) credited" : paid ? "\(total) paid" : "\(total) due \(due)"
        let tenantName = Self.oneLine(tenant.name)
        // Finance is told who the invoice was issued to, as its PDF says: the tenant's name
        // and address then, not after a rename (the tenant is greeted as it is called now).
        let billedTo = invoice.billedTo.map { Recipient(name: $0.name, email: $0.email) } ?? tenant
        let subject =
            notification.audience == .finance
            ? "[Finance copy] \(what) \(invoice.number) for \(Self.oneLine(billedTo.name)): \(owed)"
            : "\(what) \(invoice.number) from \(sellerName): \(owed)"
        var intro =
            notification.audience == .finance
            ? ["A copy of \(what.lowercased()) \(invoice.number), issued to \(Self.oneLine(billedTo.name)) <\(billedTo.email)>."]
            : ["Hello \(tenantName),", "", "Here is \(what.lowercased()) \(invoice.number) from \(sellerName)."]
        if credit {
            intro += [
                "",
                (adjustment
                    ? "Usage that arrived after its period had been invoiced lowered what that period comes to "
                        + "(\(Wording.period(invoice.periodStart, invoice.periodEnd)))."
                    : "Corrections of earlier periods, lowered by usage that arrived after they were invoiced, exceed this period's charges.")
                    + " Nothing is due: the difference is credited to your account.",
            ]
        } else if adjustment {
            intro += [
                "",
                "This adjustment invoice bills usage that arrived after its period had been invoiced "
                    + "(late usage of \(Wording.period(invoice.periodStart, invoice.periodEnd))).",
            ]
        }
        let summary: [(String, String)] =
            credit
            ? [
                ("Credit note", invoice.number), (adjustment ? "Late usage of" : "Period", Wording.period(invoice.periodStart, invoice.periodEnd)),
                ("Issued", Wording.day(invoice.issuedAt)),
                ("Credited", "\(InvoiceDocument.money(-invoice.totalCents, currency: invoice.currency)) (\(invoice.currency.uppercased()))"),
            ]
            : [
                ("Invoice", invoice.number), (adjustment ? "Late usage of" : "Period", Wording.period(invoice.periodStart, invoice.periodEnd)),
                ("Issued", Wording.day(invoice.issuedAt)),
            ]
                + (paid
                    ? [("Status", "Paid"), ("Amount paid", "\(total) (\(invoice.currency.uppercased()))")]
                    : [("Due", due), ("Amount due", "\(total) (\(invoice.currency.uppercased()))")])
        var lines = invoice.lines.map { ($0.description, InvoiceDocument.money($0.amountCents, currency: invoice.currency)) }
        lines += [
            ("Subtotal", InvoiceDocument.money(invoice.subtotalCents, currency: invoice.currency)),
            ("Tax (\(InvoiceDocument.percent(invoice.taxRateBps)))", InvoiceDocument.money(invoice.taxCents, currency: invoice.currency)),
            ("Total", total),
        ]
        let closing = [
            "The invoice is attached as a PDF (\(invoice.number).pdf).",
            "Questions about it? Write to \(from.address).",
        ]
        return message(
            to: notification, name: notification.audience == .finance ? nil : tenantName, subject: subject, intro: intro,
            summary: summary, table: lines, closing: closing,
            attachments: [MailAttachment(filename: "\(invoice.number).pdf", contentType: "application/pdf", data: Data(pdf))])
    }

    /// Stripe could not collect an invoice: what failed and what to do.
    public func paymentFailed(_ event: BillingEvent.InvoicePaymentFailed, tenant: Recipient, to notification: PlannedNotification) -> MailMessage {
        let amount = InvoiceDocument.money(event.amountDueCents, currency: event.currency)
        let next =
            event.nextAttemptAt.map { "The card will be tried again on \(Wording.day($0))." }
            ?? "No further automatic attempt is scheduled."
        return message(
            to: notification, name: Self.oneLine(tenant.name), subject: "Payment failed for invoice \(event.number) (\(amount))",
            intro: [
                "Hello \(Self.oneLine(tenant.name)),", "",
                "We could not collect \(amount) for invoice \(event.number)."
                    + (event.failureMessage.map { " The payment provider said: \(Self.oneLine($0))" } ?? ""),
            ],
            summary: [
                ("Invoice", event.number), ("Amount due", "\(amount) (\(event.currency.uppercased()))"),
                ("Attempts so far", event.attemptCount.map(String.init) ?? "1"),
            ],
            table: [],
            closing: [
                next,
                "What to do: update the card on file (or add another payment method), or pay the invoice another way, "
                    + "before the next attempt. Write to \(from.address) if you need help.",
            ])
    }

    /// A usage alert fired.
    public func alert(_ event: BillingEvent.AlertTriggered, tenant: Recipient, to notification: PlannedNotification) -> MailMessage {
        let crossed: String
        switch event.alertKind {
        case "quota": crossed = "reached \(event.threshold ?? "?")% of its quota" + (event.quota.map { " (\($0))" } ?? "")
        case "anomaly": crossed = "is far above its usual hourly usage"
        default: crossed = "reached \(event.threshold ?? "?")"
        }
        return message(
            to: notification, name: Self.oneLine(tenant.name), subject: "Usage alert: \(event.metric) \(crossed)",
            intro: [
                "Hello \(Self.oneLine(tenant.name)),", "",
                "Your usage of \(event.metric) \(crossed) in the period \(Wording.period(event.periodStart, event.periodEnd)).",
            ],
            summary: [
                ("Metric", event.metric), ("Usage so far", event.value), ("Quota", event.quota ?? "none"),
                ("Period", Wording.period(event.periodStart, event.periodEnd)),
            ],
            table: [], closing: ["This alert fires once per period; it is armed again when the next period starts."])
    }

    /// A metric went over its quota.
    public func quotaExceeded(_ event: BillingEvent.QuotaExceeded, tenant: Recipient, to notification: PlannedNotification) -> MailMessage {
        let effect =
            event.enforcement == "hard"
            ? "Requests that use \(event.metric) are refused (HTTP 429) until the period ends on \(Wording.day(event.periodEnd)); "
                + "upgrade your plan to lift the limit now."
            : "Usage above the quota is allowed and billed as overage at your plan's rate on the next invoice."
        return message(
            to: notification, name: Self.oneLine(tenant.name), subject: "Quota exceeded: \(event.metric) \(event.value) of \(event.quota)",
            intro: [
                "Hello \(Self.oneLine(tenant.name)),", "",
                "Your usage of \(event.metric) went over its quota of \(event.quota) in the period "
                    + "\(Wording.period(event.periodStart, event.periodEnd)).",
            ],
            summary: [("Metric", event.metric), ("Usage so far", event.value), ("Quota", event.quota)],
            table: [], closing: [effect])
    }

    private func message(
        to notification: PlannedNotification, name: String?, subject: String, intro: [String], summary: [(String, String)],
        table: [(String, String)], closing: [String], attachments: [MailAttachment] = []
    ) -> MailMessage {
        MailMessage(
            from: from, to: [MailAddress(notification.recipient, displayName: name)], subject: Self.oneLine(subject),
            textBody: Self.text(intro: intro, summary: summary, table: table, closing: closing, signature: sellerName),
            htmlBody: Self.html(intro: intro, summary: summary, table: table, closing: closing, signature: sellerName),
            attachments: attachments, headers: [MailHeader("X-Tally-Notification", notification.dedupKey)],
            messageID: notification.messageID(domain: from.address.split(separator: "@").last.map(String.init) ?? "tally.localhost"))
    }

    static func text(intro: [String], summary: [(String, String)], table: [(String, String)], closing: [String], signature: String) -> String {
        let labelWidth = (summary.map(\.0.count).max() ?? 0) + 1
        var lines = intro + [""]
        lines += summary.map { "  " + ($0.0 + ":").padding(toLength: labelWidth + 1, withPad: " ", startingAt: 0) + " " + $0.1 }
        if !table.isEmpty {
            lines.append("")
            lines += table.map { "  \($0.0)\n      \($0.1)" }
        }
        lines += [""] + closing + ["", "— \(signature)"]
        return lines.joined(separator: "\n") + "\n"
    }

    static func html(intro: [String], summary: [(String, String)], table: [(String, String)], closing: [String], signature: String) -> String {
        let escape = HTMLText.escape
        var html = "<!DOCTYPE html><html><body style=\"font-family: sans-serif; color: #222\">\n"
        html += intro.split(separator: "").map { "<p>" + $0.map(escape).joined(separator: "<br>") + "</p>\n" }.joined()
        html += "<table style=\"border-collapse: collapse\">\n"
        html += summary.map { "<tr><th style=\"text-align: left; padding-right: 1em\">\(escape($0.0))</th><td>\(escape($0.1))</td></tr>\n" }.joined()
        html += "</table>\n"
        if !table.isEmpty {
            html += "<table style=\"border-collapse: collapse; margin-top: 1em\">\n"
            html += table.map {
                "<tr><td style=\"padding-right: 2em\">\(escape($0.0))</td><td style=\"text-align: right\">\(escape($0.1))</td></tr>\n"
            }
            .joined()
            html += "</table>\n"
        }
        html += closing.map { "<p>\(escape($0))</p>\n" }.joined()
        return html + "<p>— \(escape(signature))</p>\n</body></html>\n"
    }

    /// `text` on one line: line breaks, tabs and other control characters become spaces.
    /// A name as one line of a subject or a sentence: control characters and line or
    /// paragraph separators become spaces, and bidirectional controls are left out — a
    /// tenant named "Acme \u{202E}" turned the rest of finance's subject, amount and due
    /// date, right to left.
    static func oneLine(_ text: String) -> String {
        var line = String.UnicodeScalarView()
        for scalar in text.unicodeScalars where !scalar.properties.isBidiControl {
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator: line.append(" ")
            default: line.append(scalar)
            }
        }
        return String(line).trimmingCharacters(in: .whitespaces)
    }
}

/// Dates and periods in the invoices' own wording (BillingEngine's `InvoiceText`), so the
/// email says what the PDF and the API's line descriptions say.
enum Wording {
    static func day(_ date: Date) -> String { InvoiceText.day(Instant(date)) }

    static func period(_ start: Date, _ end: Date) -> String { InvoiceText.period(Period(start: Instant(start), end: Instant(end))) }
}
