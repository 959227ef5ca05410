import Foundation

/// An email to send: addresses, subject, a text body with an optional HTML
/// alternative, attachments and extra headers.
///
/// A value only; `rendered(date:)` turns it into the RFC 5322 / MIME text that goes on
/// the wire, and checks it there (at least one `to`, no line breaks in headers).
public struct MailMessage: Sendable, Equatable {
    public var from: MailAddress
    /// At least one.
    public var to: [MailAddress]
    public var cc: [MailAddress]
    public var subject: String
    public var textBody: String
    /// When present, sent as the preferred alternative to `textBody`.
    public var htmlBody: String?
    public var attachments: [MailAttachment]
    /// Extra headers such as an idempotency key; they cannot replace the ones this type writes.
    public var headers: [MailHeader]
    /// The `Message-ID`, angle brackets included: `<id@domain>`. Stable across retries
    /// of one message, so receivers (and tests) can recognise a duplicate.
    public var messageID: String

    /// A message; without `messageID`, a new random one in the sender's domain.
    public init(
        from: MailAddress, to: [MailAddress], cc: [MailAddress] = [], subject: String, textBody: String,
        htmlBody: String? = nil, attachments: [MailAttachment] = [], headers: [MailHeader] = [],
        messageID: String? = nil
    ) {
        self.from = from
        self.to = to
        self.cc = cc
        self.subject = subject
        self.textBody = textBody
        self.htmlBody = htmlBody
        self.attachments = attachments
        self.headers = headers
        self.messageID = messageID ?? "<\(UUID().uuidString.lowercased())@\(from.domain)>"
    }

    /// Everyone the message is delivered to (the SMTP envelope's `RCPT TO`).
    public var recipients: [MailAddress] { to + cc }
}

/// A mailbox: `address` plus an optional display name (`"Billing" <billing@example.com>`).
public struct MailAddress: Sendable, Hashable, CustomStringConvertible {
    /// `local@domain`, ASCII only, no spaces or angle brackets.
    public var address: String
    public var displayName: String?

    /// A mailbox; `rendered(date:)` checks the address and encodes a non-ASCII name.
    public init(_ address: String, displayName: String? = nil) {
        self.address = address
        self.displayName = displayName
    }

    var domain: String {
        address.split(separator: "@").last.map(String.init) ?? "localhost"
    }

    public var description: String { address }
}

/// A file sent with a message, such as an invoice PDF.
public struct MailAttachment: Sendable, Equatable {
    /// The name shown to the reader; may be non-ASCII.
    public var filename: String
    /// A MIME type such as `application/pdf`.
    public var contentType: String
    public var data: Data

    /// An attachment; sent base64-encoded, so `data` may hold any bytes.
    public init(filename: String, contentType: String, data: Data) {
        self.filename = filename
        self.contentType = contentType
        self.data = data
    }
}

/// An extra header line, e.g. `X-Tally-Idempotency-Key`.
public struct MailHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    /// A header; a non-ASCII value is sent as encoded-words, a line break is refused.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}
