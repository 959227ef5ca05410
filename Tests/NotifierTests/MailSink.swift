import Foundation
import TallyTestSupport
import Testing

/// The emails the local SMTP sink stored (`.local/mail`, one `.eml` each), read back
/// with Python's `email` package — an independent parser — and the attached PDFs with
/// `pdftotext`.
struct MailSink {
    /// One received email as Python's `email` package parsed it.
    struct Email: Decodable {
        let to: String
        let from: String
        let subject: String
        let messageID: String
        let defects: [String]
        let text: String
        let html: String
        let headers: [String]
        let attachments: [Attachment]

        struct Attachment: Decodable {
            let filename: String
            let contentType: String
            let pdfText: String
            let longestLine: Int

            enum CodingKeys: String, CodingKey {
                case filename
                case contentType = "content_type"
                case pdfText = "pdf_text"
                case longestLine = "longest_line"
            }
        }

        enum CodingKeys: String, CodingKey {
            case to, from, subject, defects, text, html, headers, attachments
            case messageID = "message_id"
        }
    }

    static let script = #"""
        import email, email.policy, json, os, subprocess, sys, tempfile
        directory, needle = sys.argv[1], sys.argv[2]
        found = []
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".eml"):
                continue
            raw = open(os.path.join(directory, name), "rb").read()
            if needle.encode() not in raw:
                continue
            message = email.message_from_bytes(raw, policy=email.policy.default)
            if all(needle not in str(message[field] or "") for field in ("Subject", "To", "X-Tally-Notification")):
                continue
            defects = [repr(d) for d in message.defects]
            text, html, attachments = "", "", []
            for part in message.walk():
                defects += [repr(d) for d in part.defects]
                if part.is_multipart():
                    continue
                if part.get_content_disposition() == "attachment":
                    data = part.get_payload(decode=True)
                    pdf_text = ""
                    if part.get_content_type() == "application/pdf":
                        with tempfile.NamedTemporaryFile(suffix=".pdf") as pdf:
                            pdf.write(data); pdf.flush()
                            pdf_text = subprocess.run(["pdftotext", pdf.name, "-"], capture_output=True, text=True).stdout
                    encoded = part.as_string().split("\n\n", 1)[-1]
                    attachments.append({"filename": part.get_filename(), "content_type": part.get_content_type(), "pdf_text": pdf_text,
                                        "longest_line": max((len(l) for l in encoded.splitlines()), default=0)})
                elif part.get_content_type() == "text/plain":
                    text = part.get_content()
                elif part.get_content_type() == "text/html":
                    html = part.get_content()
            found.append({"to": str(message["To"]), "from": str(message["From"]), "subject": str(message["Subject"]),
                          "message_id": str(message["Message-ID"]), "defects": defects, "text": text, "html": html,
                          "headers": [k.lower() for k in message.keys()], "attachments": attachments})
        print(json.dumps(found))
        """#

    /// Every stored email whose subject, recipient or notification key mentions `needle`.
    static func emails(mentioning needle: String) async throws -> [Email] {
        let python = TestEnvironment.repositoryRoot + "/.local/venv/bin/python"
        let output = try await TestEnvironment.output(of: python, ["-c", script, TestEnvironment.mailSinkDirectory, needle])
        return try JSONDecoder().decode([Email].self, from: Data(output.utf8))
    }

    /// Polls until `count` emails mention `needle` (a guard against hanging, not a bound).
    static func waitForEmails(mentioning needle: String, count: Int, limit: Duration = .seconds(300)) async throws -> [Email] {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let found = try await emails(mentioning: needle)
            if found.count >= count { return found }
            try await Task.sleep(for: .milliseconds(250))
        }
        Issue.record("gave up waiting for \(count) emails mentioning \(needle)")
        return try await emails(mentioning: needle)
    }
}
