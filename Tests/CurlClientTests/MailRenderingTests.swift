import Foundation
import Testing

@testable import CurlClient

/// Fixtures shared by the rendering and delivery tests.
enum MailFixtures {
    /// Tue, 25 Nov 2025 09:05:03 +0000.
    static let date = Date(timeIntervalSince1970: 1_764_061_503)

    /// Bytes that look like a PDF and hold every byte value, CR and LF included.
    static let pdfLikeBytes: Data = {
        var bytes = Array("%PDF-1.7\n%\u{E2}\u{E3}\u{CF}\u{D3}\n".utf8)
        bytes += (0..<3).flatMap { _ in (0...255).map(UInt8.init) }
        bytes += Array("\r\n.\r\n..\n%%EOF\n".utf8)
        return Data(bytes)
    }()

    static func invoice(subject: String, messageID: String? = nil) -> MailMessage {
        MailMessage(
            from: MailAddress("billing@tally.localhost", displayName: "Tally Billing"),
            to: [MailAddress("ap@customer.example", displayName: "Zoë Müller, Accounts")],
            cc: [MailAddress("finance@tally.localhost")],
            subject: subject,
            textBody:
                "Hello,\n\nyour invoice INV-0042 for 1.234,50 € is attached.\r\nA line that is long enough to need a soft break in quoted-printable, certainly over seventy-six characters.\n.\nThanks ",
            htmlBody: "<p>Your invoice <b>INV-0042</b> for 1.234,50&nbsp;€ is attached.</p>",
            attachments: [MailAttachment(filename: "INV-0042.pdf", contentType: "application/pdf", data: pdfLikeBytes)],
            headers: [MailHeader("X-Tally-Idempotency-Key", "invoice-0042-email-1")],
            messageID: messageID
        )
    }
}

@Suite("MIME rendering")
struct MailRenderingTests {
    @Test("a text-only message is one text/plain part under the standard headers")
    func plainText() throws {
        let message = MailMessage(
            from: MailAddress("billing@tally.localhost"), to: [MailAddress("ap@customer.example")],
            subject: "Your invoice", textBody: "Hello", messageID: "<m1@tally.localhost>"
        )
        let text = try message.rendered(date: MailFixtures.date)
        let parsed = try ParsedEntity(text)
        #expect(parsed.header("Date") == "Tue, 25 Nov 2025 09:05:03 +0000")
        #expect(parsed.header("From") == "<billing@tally.localhost>")
        #expect(parsed.header("To") == "<ap@customer.example>")
        #expect(parsed.header("Cc") == nil)
        #expect(parsed.header("Subject") == "Your invoice")
        #expect(parsed.header("Message-ID") == "<m1@tally.localhost>")
        #expect(parsed.header("MIME-Version") == "1.0")
        #expect(parsed.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(parsed.header("Content-Transfer-Encoding") == "quoted-printable")
        #expect(try parsed.decodedText() == "Hello\r\n")
        #expect(text.hasSuffix("\r\n"))
    }

    @Test("every line ends in CRLF, is 7-bit ASCII, and fits in 78 characters")
    func wireFormat() throws {
        let text = try MailFixtures.invoice(subject: "Rechnung für Zoë — \(String(repeating: "lang ", count: 30))")
            .rendered(date: MailFixtures.date)
        let bytes = Array(text.utf8)
        #expect(bytes.allSatisfy { $0 < 0x80 })
        for (index, byte) in bytes.enumerated() {
            if byte == 0x0D { #expect(index + 1 < bytes.count && bytes[index + 1] == 0x0A, "bare CR at \(index)") }
            if byte == 0x0A { #expect(index > 0 && bytes[index - 1] == 0x0D, "bare LF at \(index)") }
        }
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.count <= 78 }, "\(lines.filter { $0.count > 78 })")
        #expect(text.hasSuffix("\r\n"))
    }

    @Test("HTML and attachments nest as multipart/mixed holding multipart/alternative")
    func structure() throws {
        let parsed = try ParsedEntity(MailFixtures.invoice(subject: "Structure").rendered(date: MailFixtures.date))
        #expect(parsed.mediaType == "multipart/mixed")
        let parts = try parsed.parts()
        #expect(parts.map(\.mediaType) == ["multipart/alternative", "application/pdf"])
        let alternatives = try parts[0].parts()
        #expect(alternatives.map(\.mediaType) == ["text/plain", "text/html"])
        #expect(try alternatives[1].decodedText() == "<p>Your invoice <b>INV-0042</b> for 1.234,50&nbsp;€ is attached.</p>")
        #expect(parts[1].header("Content-Disposition")?.hasPrefix("attachment") == true)
        #expect(parts[1].parameter("filename", of: "Content-Disposition") == "INV-0042.pdf")
        #expect(parts[1].parameter("name", of: "Content-Type") == "INV-0042.pdf")
    }

    @Test("only the parts a message has: HTML alone gives alternative, attachments alone give mixed")
    func partialStructures() throws {
        var htmlOnly = MailFixtures.invoice(subject: "HTML only")
        htmlOnly.attachments = []
        let html = try ParsedEntity(htmlOnly.rendered(date: MailFixtures.date))
        #expect(html.mediaType == "multipart/alternative")
        #expect(try html.parts().map(\.mediaType) == ["text/plain", "text/html"])

        var attachmentOnly = MailFixtures.invoice(subject: "Attachment only")
        attachmentOnly.htmlBody = nil
        let mixed = try ParsedEntity(attachmentOnly.rendered(date: MailFixtures.date))
        #expect(mixed.mediaType == "multipart/mixed")
        #expect(try mixed.parts().map(\.mediaType) == ["text/plain", "application/pdf"])
    }

    @Test("a binary attachment round-trips through base64 lines of 76 characters")
    func attachmentRoundTrip() throws {
        let parsed = try ParsedEntity(MailFixtures.invoice(subject: "Bytes").rendered(date: MailFixtures.date))
        let attachment = try #require(try parsed.leaves().first { $0.mediaType == "application/pdf" })
        #expect(attachment.header("Content-Transfer-Encoding") == "base64")
        #expect(try attachment.decodedBody() == MailFixtures.pdfLikeBytes)
        let lines = attachment.rawBody.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.dropLast().allSatisfy { $0.count == 76 })
        #expect((1...76).contains(lines.last?.count ?? 0))
    }

    @Test(
        "a non-ASCII subject is sent as RFC 2047 encoded-words and decodes back",
        arguments: [
            "Rechnung für Zoë",
            "請求書 INV-0042 の送付 — ご確認ください。請求書 INV-0042 の送付 — ご確認ください。",
            "Invoice 👩‍👩‍👧 ready",
            "Literal =?UTF-8?B?x?= stays literal",
        ])
    func encodedSubject(_ subject: String) throws {
        let text = try MailFixtures.invoice(subject: subject).rendered(date: MailFixtures.date)
        let parsed = try ParsedEntity(text)
        #expect(parsed.header("Subject")?.hasPrefix("=?UTF-8?B?") == true)
        #expect(parsed.decodedHeader("Subject") == subject)
    }

    @Test("a long ASCII subject stays readable: folded at spaces, unfolded back intact")
    func foldedSubject() throws {
        let subject = "Your Tally invoice INV-0042 for the period from 1 October 2025 to 31 October 2025 is ready"
        let text = try MailFixtures.invoice(subject: subject).rendered(date: MailFixtures.date)
        #expect(text.contains("Subject: Your Tally invoice"))
        #expect(text.contains("Subject: Your Tally invoice INV-0042 for the period from 1 October 2025 to 31\r\n October 2025 is ready\r\n"))
        #expect(try ParsedEntity(text).header("Subject") == subject)
    }

    @Test("text bodies are quoted-printable and decode to the text with CRLF line breaks")
    func quotedPrintableBodies() throws {
        let body = "Total = 1.234,50 €\ntrailing space \n\ttab\r\nold mac\rend" + String(repeating: "x", count: 200) + "=é"
        var message = MailFixtures.invoice(subject: "QP")
        message.textBody = body
        message.htmlBody = nil
        message.attachments = []
        let parsed = try ParsedEntity(message.rendered(date: MailFixtures.date))
        let expected = body.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .replacingOccurrences(of: "\n", with: "\r\n")
        #expect(try parsed.decodedText() == expected + "\r\n")
        #expect(parsed.rawBody.components(separatedBy: "\r\n").allSatisfy { $0.count <= 76 })
        #expect(!parsed.rawBody.contains(" \r\n"))
        #expect(!parsed.rawBody.contains("=_"))
    }

    @Test("the Date header is the injected date in UTC")
    func dateHeader() throws {
        var message = MailFixtures.invoice(subject: "Dates")
        let leapDay = Date(timeIntervalSince1970: 951_800_461)
        #expect(try ParsedEntity(message.rendered(date: leapDay)).header("Date") == "Tue, 29 Feb 2000 05:01:01 +0000")
        message.subject = "Dates again"
        #expect(try ParsedEntity(message.rendered(date: MailFixtures.date)).header("Date") == "Tue, 25 Nov 2025 09:05:03 +0000")
    }

    @Test("the Message-ID is the given one, or a fresh one in the sender's domain")
    func messageID() throws {
        let given = MailFixtures.invoice(subject: "ID", messageID: "<invoice-42@tally.localhost>")
        #expect(try ParsedEntity(given.rendered(date: MailFixtures.date)).header("Message-ID") == "<invoice-42@tally.localhost>")
        let first = MailFixtures.invoice(subject: "ID")
        let second = MailFixtures.invoice(subject: "ID")
        #expect(first.messageID.hasPrefix("<") && first.messageID.hasSuffix("@tally.localhost>"))
        #expect(first.messageID != second.messageID)
        #expect(try ParsedEntity(first.rendered(date: MailFixtures.date)).header("Message-ID") == first.messageID)
    }

    @Test("addresses: display names quoted or encoded, recipients listed in To and Cc")
    func addresses() throws {
        var message = MailFixtures.invoice(subject: "Addresses")
        message.to.append(MailAddress("ops@customer.example", displayName: "Ops \"Night\" Desk"))
        let parsed = try ParsedEntity(message.rendered(date: MailFixtures.date))
        #expect(parsed.header("From") == "\"Tally Billing\" <billing@tally.localhost>")
        #expect(parsed.header("To")?.hasPrefix("=?UTF-8?B?") == true)
        #expect(parsed.decodedHeader("To") == "Zoë Müller, Accounts <ap@customer.example>, \"Ops \\\"Night\\\" Desk\" <ops@customer.example>")
        #expect(parsed.header("Cc") == "<finance@tally.localhost>")
        #expect(message.recipients.map(\.address) == ["ap@customer.example", "ops@customer.example", "finance@tally.localhost"])
    }

    @Test("extra headers are written; a non-ASCII attachment name uses RFC 2231")
    func extraHeadersAndFilenames() throws {
        var message = MailFixtures.invoice(subject: "Extras")
        message.attachments[0].filename = "Rechnung März.pdf"
        let parsed = try ParsedEntity(message.rendered(date: MailFixtures.date))
        #expect(parsed.header("X-Tally-Idempotency-Key") == "invoice-0042-email-1")
        let attachment = try #require(try parsed.leaves().last)
        #expect(attachment.header("Content-Disposition")?.contains("filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf") == true)
        #expect(attachment.parameter("filename", of: "Content-Disposition") == "Rechnung März.pdf")
    }

    @Test("rendering is pure: the same message and date give the same text")
    func pure() throws {
        let message = MailFixtures.invoice(subject: "Pure")
        #expect(try message.rendered(date: MailFixtures.date) == message.rendered(date: MailFixtures.date))
    }

    @Test(
        "messages that cannot be delivered as meant are refused",
        arguments: [
            "no recipient", "bad address", "address with a line break", "subject with a line break",
            "header replacing Subject", "header value with a line break", "header name with a colon",
            "message id without brackets", "content type without a slash",
        ])
    func invalidMessages(_ problem: String) throws {
        var message = MailFixtures.invoice(subject: "Invalid")
        switch problem {
        case "no recipient": message.to = []
        case "bad address": message.to = [MailAddress("not-an-address")]
        case "address with a line break": message.cc = [MailAddress("a@b.example\r\nBcc: x@y.example")]
        case "subject with a line break": message.subject = "Hi\r\nBcc: x@y.example"
        case "header replacing Subject": message.headers = [MailHeader("subject", "other")]
        case "header value with a line break": message.headers = [MailHeader("X-Key", "a\nBcc: x@y.example")]
        case "header name with a colon": message.headers = [MailHeader("X-Key:", "a")]
        case "message id without brackets": message.messageID = "id@tally.localhost"
        default: message.attachments[0].contentType = "pdf"
        }
        let error = #expect(throws: CurlError.self) { try message.rendered(date: MailFixtures.date) }
        #expect(error?.code == .invalidRequest)
    }

    @Test("encoded-words never split a character and stay within 75 characters")
    func encodedWordLimits() {
        let words = MIMEEncoding.encodedWords(String(repeating: "€ü", count: 40))
        #expect(words.count > 1)
        for word in words {
            #expect(word.count <= 75)
            let decoded = ParsedEntity.decodingEncodedWords(word)
            #expect(!decoded.contains("\u{FFFD}"))
        }
    }
}
