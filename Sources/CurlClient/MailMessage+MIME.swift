import Foundation

extension MailMessage {
    /// The message as RFC 5322 / MIME text, dated `date` (the caller's clock), ready for
    /// SMTP: CRLF line endings, 7-bit ASCII (text parts quoted-printable, attachments
    /// base64, non-ASCII header text as RFC 2047 encoded-words), lines of at most 78
    /// characters, ending with CRLF. Pure: the same message and date give the same text.
    ///
    /// The body is `text/plain`; with `htmlBody` a `multipart/alternative` of both; with
    /// attachments a `multipart/mixed` of that and the files. Throws `invalidRequest` for
    /// a message that could not be delivered as meant (no `to`, a bad address, a line
    /// break in a header, an extra header replacing one this type writes).
    public func rendered(date: Date) throws(CurlError) -> String {
        try validate()
        var lines = [
            MIMEEncoding.header("Date", MIMEEncoding.date(date)),
            MIMEEncoding.addressList("From", [from]),
            MIMEEncoding.addressList("To", to),
        ]
        if !cc.isEmpty { lines.append(MIMEEncoding.addressList("Cc", cc)) }
        lines.append(MIMEEncoding.unstructured("Subject", subject))
        lines.append(MIMEEncoding.header("Message-ID", messageID))
        lines.append(MIMEEncoding.header("MIME-Version", "1.0"))
        lines += headers.map { MIMEEncoding.unstructured($0.name, $0.value) }
        let content = self.content
        lines += content.headers
        let text = lines.joined(separator: "\r\n") + "\r\n\r\n" + content.body
        return text.hasSuffix("\r\n") ? text : text + "\r\n"
    }

    private var content: MIMEEntity {
        var body = MIMEEntity.text(textBody, subtype: "plain")
        if let htmlBody {
            body = .multipart("alternative", [body, .text(htmlBody, subtype: "html")])
        }
        guard !attachments.isEmpty else { return body }
        return .multipart("mixed", [body] + attachments.map(MIMEEntity.attachment))
    }

    /// Headers this type writes itself; an extra header may not add a second one.
    private static let reservedHeaders: Set<String> = [
        "date", "from", "to", "cc", "bcc", "subject", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition",
    ]

    private func validate() throws(CurlError) {
        guard !to.isEmpty else { throw invalid("a message needs at least one To recipient") }
        for address in [from] + to + cc {
            try Self.validate(address)
        }
        try Self.validateSingleLine(subject, "the subject")
        guard Self.isMessageID(messageID) else { throw invalid("the Message-ID must look like <id@domain>") }
        for header in headers {
            guard Self.isHeaderName(header.name) else { throw invalid("an extra header name is empty or not printable ASCII") }
            guard !Self.reservedHeaders.contains(header.name.lowercased()) else {
                throw invalid("extra header \(header.name) would replace one the message writes")
            }
            try Self.validateSingleLine(header.value, "the value of header \(header.name)")
        }
        for attachment in attachments {
            try Self.validateSingleLine(attachment.filename, "an attachment's filename")
            guard Self.isContentType(attachment.contentType) else {
                throw invalid("an attachment's content type must look like type/subtype")
            }
        }
    }

    private static func validate(_ mailbox: MailAddress) throws(CurlError) {
        let parts = mailbox.address.split(separator: "@", omittingEmptySubsequences: false)
        let isPlain = mailbox.address.unicodeScalars.allSatisfy {
            (0x21...0x7E).contains($0.value) && !"<>()[],;:\\\"".unicodeScalars.contains($0)
        }
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, isPlain else {
            throw invalid("a mail address must be local@domain in plain ASCII")
        }
        try validateSingleLine(mailbox.displayName ?? "", "a display name")
    }

    private static func validateSingleLine(_ text: String, _ what: String) throws(CurlError) {
        guard !text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }) else {
            throw invalid("\(what) contains a line break")
        }
    }

    private static func isMessageID(_ id: String) -> Bool {
        // Well within the 998-character line limit, since the ID is never folded.
        guard id.hasPrefix("<"), id.hasSuffix(">"), (3...900).contains(id.count) else { return false }
        let inner = id.dropFirst().dropLast()
        return inner.contains("@") && inner.unicodeScalars.allSatisfy { (0x21...0x7E).contains($0.value) && $0 != "<" && $0 != ">" }
    }

    private static func isHeaderName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { (0x21...0x7E).contains($0.value) && $0 != ":" }
    }

    private static func isContentType(_ type: String) -> Bool {
        type.contains("/") && type.unicodeScalars.allSatisfy { (0x20...0x7E).contains($0.value) }
    }

    private static func invalid(_ message: String) -> CurlError {
        CurlError(.invalidRequest, message: message)
    }

    private func invalid(_ message: String) -> CurlError { Self.invalid(message) }
}

/// One MIME entity: its header lines and its encoded body.
///
/// Boundaries are `=_tally_<subtype>`: `=_` cannot occur in quoted-printable or base64
/// text, and header lines never start with `--`, so a boundary never collides with content.
struct MIMEEntity {
    let headers: [String]
    let body: String

    static func text(_ text: String, subtype: String) -> MIMEEntity {
        MIMEEntity(
            headers: [
                MIMEEncoding.header("Content-Type", "text/\(subtype);", [(" ", "charset=utf-8")]),
                MIMEEncoding.header("Content-Transfer-Encoding", "quoted-printable"),
            ],
            body: MIMEEncoding.quotedPrintable(text)
        )
    }

    static func attachment(_ attachment: MailAttachment) -> MIMEEntity {
        MIMEEntity(
            headers: [
                MIMEEncoding.header(
                    "Content-Type", "\(attachment.contentType);", [(" ", MIMEEncoding.parameter("name", attachment.filename))]
                ),
                MIMEEncoding.header(
                    "Content-Disposition", "attachment;", [(" ", MIMEEncoding.parameter("filename", attachment.filename))]
                ),
                MIMEEncoding.header("Content-Transfer-Encoding", "base64"),
            ],
            body: MIMEEncoding.base64Lines(attachment.data)
        )
    }

    static func multipart(_ subtype: String, _ parts: [MIMEEntity]) -> MIMEEntity {
        let boundary = "=_tally_\(subtype)"
        let body = parts.map { "--\(boundary)\r\n\($0.rendered)\r\n" }.joined() + "--\(boundary)--\r\n"
        return MIMEEntity(
            headers: [MIMEEncoding.header("Content-Type", "multipart/\(subtype);", [(" ", "boundary=\"\(boundary)\"")])],
            body: body
        )
    }

    /// Headers, a blank line, the body.
    var rendered: String { headers.joined(separator: "\r\n") + "\r\n\r\n" + body }
}
