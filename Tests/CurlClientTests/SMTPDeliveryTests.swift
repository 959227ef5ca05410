import CurlClient
import Foundation
import TallyTestSupport
import Testing

/// Delivery to the real SMTP sink started by `ops/local.sh` (aiosmtpd), which saves each
/// message as one .eml file, prefixed with the envelope it received.
@Suite("SMTP delivery to the local sink")
struct SMTPDeliveryTests {
    @Test("a message with a PDF attachment arrives intact: envelope, headers, subject, bytes")
    func deliverInvoice() async throws {
        let token = UUID().uuidString.lowercased()
        let subject = "Rechnung INV-\(token.prefix(8)) für Zoë"
        let message = MailFixtures.invoice(subject: subject, messageID: "<invoice-\(token)@tally.localhost>")
        let client = try SMTPClient(configuration: SMTPConfiguration(url: TestEnvironment.smtpURL))

        try await client.send(message, date: MailFixtures.date)

        let file = try await SinkFile.waiting(for: message.messageID)
        defer { try? FileManager.default.removeItem(at: file.url) }
        let parsed = try ParsedEntity(file.text)
        #expect(parsed.header("X-Tally-Envelope-From") == "billing@tally.localhost")
        #expect(parsed.header("X-Tally-Envelope-To") == "ap@customer.example, finance@tally.localhost")
        #expect(parsed.decodedHeader("Subject") == subject)
        #expect(parsed.decodedHeader("To") == "Zoë Müller, Accounts <ap@customer.example>")
        #expect(parsed.header("Date") == "Tue, 25 Nov 2025 09:05:03 +0000")
        #expect(parsed.header("X-Tally-Idempotency-Key") == "invoice-0042-email-1")
        let leaves = try parsed.leaves()
        #expect(leaves.map(\.mediaType) == ["text/plain", "text/html", "application/pdf"])
        let text = try #require(leaves.first)
        // The body has a line holding only ".": SMTP dot-stuffing must restore it.
        #expect(try text.decodedText().contains("\r\n.\r\n"))
        let attachment = try #require(leaves.last)
        #expect(attachment.parameter("filename", of: "Content-Disposition") == "INV-0042.pdf")
        #expect(try attachment.decodedBody() == MailFixtures.pdfLikeBytes)
    }

    @Test("one client delivers several messages in a row over its reused handle")
    func severalMessages() async throws {
        let client = try SMTPClient(configuration: SMTPConfiguration(url: TestEnvironment.smtpURL))
        var ids: [String] = []
        for index in 0..<3 {
            let message = MailMessage(
                from: MailAddress("billing@tally.localhost"), to: [MailAddress("ap-\(index)@customer.example")],
                subject: "Reminder \(index) \(UUID().uuidString)", textBody: "Reminder \(index)"
            )
            try await client.send(message, date: MailFixtures.date)
            ids.append(message.messageID)
        }
        for (index, id) in ids.enumerated() {
            let file = try await SinkFile.waiting(for: id)
            defer { try? FileManager.default.removeItem(at: file.url) }
            #expect(try ParsedEntity(file.text).header("X-Tally-Envelope-To") == "ap-\(index)@customer.example")
        }
    }

    @Test("requiring STARTTLS from a server that does not offer it fails with tls, sending nothing")
    func startTLSRequired() async throws {
        var configuration = try SMTPConfiguration(url: TestEnvironment.smtpURL)
        configuration.security = .startTLS
        let client = try SMTPClient(configuration: configuration)
        let message = MailMessage(
            from: MailAddress("billing@tally.localhost"), to: [MailAddress("ap@customer.example")],
            subject: "Must not arrive \(UUID().uuidString)", textBody: "secret"
        )
        let error = await #expect(throws: CurlError.self) { try await client.send(message, date: MailFixtures.date) }
        #expect(error?.code == .tls)
        #expect(try SinkFile.find(message.messageID, skipping: []).file == nil)
    }

    @Test("an unreachable server is couldNotConnect")
    func unreachable() async throws {
        let refusing = try RefusingPort()
        let client = try SMTPClient(configuration: SMTPConfiguration(url: "smtp://127.0.0.1:\(refusing.port)"))
        let message = MailMessage(
            from: MailAddress("billing@tally.localhost"), to: [MailAddress("ap@customer.example")],
            subject: "Unreachable", textBody: "x"
        )
        let error = await #expect(throws: CurlError.self) { try await client.send(message, date: MailFixtures.date) }
        #expect(error?.code == .couldNotConnect)
        #expect(error?.isTransient == true)
    }
}

/// One message file in the sink directory.
struct SinkFile {
    let url: URL
    let text: String

    /// Polls the sink directory until a message with `messageID` appears, for at most 10 s.
    static func waiting(for messageID: String) async throws -> SinkFile {
        let deadline = ContinuousClock.now + .seconds(10)
        var checked: Set<String> = []
        while ContinuousClock.now < deadline {
            let (file, seen) = try find(messageID, skipping: checked)
            if let file { return file }
            checked = seen
            try await Task.sleep(for: .milliseconds(50))
        }
        throw SinkTimeout(messageID: messageID)
    }

    /// The file holding `messageID`, reading only files not in `checked` (the sink renames
    /// complete files into place, so a file once read never changes), and every name seen.
    static func find(_ messageID: String, skipping checked: Set<String>) throws -> (file: SinkFile?, seen: Set<String>) {
        let directory = URL(fileURLWithPath: TestEnvironment.mailSinkDirectory)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".eml") && !$0.hasPrefix(".") }
        for name in names where !checked.contains(name) {
            let url = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: url.path) else { continue }
            let text = String(decoding: data, as: UTF8.self)
            if text.contains("\r\nMessage-ID: \(messageID)\r\n") { return (SinkFile(url: url, text: text), Set(names)) }
        }
        return (nil, Set(names))
    }

    struct SinkTimeout: Error, CustomStringConvertible {
        let messageID: String
        var description: String { "no message \(messageID) in \(TestEnvironment.mailSinkDirectory) within 10 s" }
    }
}
