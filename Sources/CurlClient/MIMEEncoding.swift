import Foundation

/// The encodings that keep a message 7-bit ASCII with lines of at most 78 characters
/// (RFC 5322, 2045, 2047, 2231). Pure functions; the output always uses CRLF.
enum MIMEEncoding {
    static let lineLimit = 78

    /// One header field, folded at the given pieces: `pieces[0]` starts the value and
    /// each later piece is `(separator, text)`, where the separator is `" "` or `", "`.
    /// A fold replaces the separator's space with CRLF + space, so unfolding restores it.
    static func header(_ name: String, _ first: String, _ rest: [(separator: String, text: String)] = []) -> String {
        var lines: [String] = []
        var line = "\(name): \(first)"
        for (separator, text) in rest {
            if !text.isEmpty, line.count + separator.count + text.count > lineLimit {
                lines.append(line + separator.dropLast())
                line = " " + text
            } else {
                line += separator + text
            }
        }
        lines.append(line)
        return lines.joined(separator: "\r\n")
    }

    /// An unstructured value (a subject) as foldable words: plain words when the text is
    /// short printable ASCII, else RFC 2047 encoded-words, which any text survives.
    static func unstructured(_ name: String, _ text: String) -> String {
        let words = needsEncodedWords(text) ? encodedWords(text) : text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        return header(name, words.first ?? "", words.dropFirst().map { (" ", $0) })
    }

    static func needsEncodedWords(_ text: String) -> Bool {
        text.unicodeScalars.contains { !(0x20...0x7E).contains($0.value) }
            || text.contains("=?")
            || text.split(separator: " ").contains { $0.count > 70 }
    }

    /// `=?UTF-8?B?…?=` words of at most 39 UTF-8 bytes each (64 characters), never
    /// splitting a character, so each word decodes on its own.
    static func encodedWords(_ text: String) -> [String] {
        var words: [String] = []
        var chunk: [UInt8] = []
        for character in text {
            let bytes = Array(String(character).utf8)
            if !chunk.isEmpty, chunk.count + bytes.count > 39 {
                words.append(encodedWord(chunk))
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append(encodedWord(chunk)) }
        return words
    }

    private static func encodedWord(_ bytes: [UInt8]) -> String {
        "=?UTF-8?B?\(Data(bytes).base64EncodedString())?="
    }

    /// A mailbox as header pieces: a quoted or encoded display name, then `<address>`.
    static func mailbox(_ mailbox: MailAddress) -> [String] {
        guard let name = mailbox.displayName, !name.isEmpty else { return ["<\(mailbox.address)>"] }
        if needsEncodedWords(name) { return encodedWords(name) + ["<\(mailbox.address)>"] }
        let escaped = name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return ["\"\(escaped)\"", "<\(mailbox.address)>"]
    }

    /// A comma-separated address list, folded between and inside mailboxes.
    static func addressList(_ name: String, _ mailboxes: [MailAddress]) -> String {
        var pieces: [(separator: String, text: String)] = []
        for (index, address) in mailboxes.enumerated() {
            for (position, piece) in mailbox(address).enumerated() {
                pieces.append((position > 0 ? " " : index > 0 ? ", " : "", piece))
            }
        }
        return header(name, pieces.first?.text ?? "", Array(pieces.dropFirst()))
    }

    /// UTF-8 text as quoted-printable: line breaks of any kind become CRLF, lines are
    /// soft-wrapped at 76 characters, and `=`, controls, non-ASCII bytes and whitespace
    /// before a line break are escaped. The output never contains `=_`, which is what
    /// makes `=_`-prefixed boundaries safe.
    static func quotedPrintable(_ text: String) -> String {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        return normalized.split(separator: "\n", omittingEmptySubsequences: false)
            .map { quotedPrintableLine(Array($0.utf8)) }
            .joined(separator: "\r\n")
    }

    private static func quotedPrintableLine(_ bytes: [UInt8]) -> String {
        var lines: [String] = []
        var line = ""
        for (index, byte) in bytes.enumerated() {
            let isWhitespace = byte == 0x20 || byte == 0x09
            let isLiteral = (0x21...0x7E).contains(byte) && byte != UInt8(ascii: "=") || (isWhitespace && index < bytes.count - 1)
            let token = isLiteral ? String(UnicodeScalar(byte)) : escaped(byte)
            // 75 plus the soft break's "=" keeps every line within 76.
            if line.utf8.count + token.utf8.count > 75 {
                lines.append(line + "=")
                line = ""
            }
            line += token
        }
        lines.append(line)
        return lines.joined(separator: "\r\n")
    }

    private static func escaped(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "=\(digits[Int(byte >> 4)])\(digits[Int(byte & 0x0F)])"
    }

    /// Base64 in lines of 76 characters separated by CRLF (RFC 2045 6.8).
    static func base64Lines(_ data: Data) -> String {
        let encoded = Array(data.base64EncodedString().utf8)
        return stride(from: 0, to: encoded.count, by: 76)
            .map { String(decoding: encoded[$0..<min($0 + 76, encoded.count)], as: UTF8.self) }
            .joined(separator: "\r\n")
    }

    /// A `name="value"` MIME parameter, or RFC 2231 `name*=UTF-8''…` when the value is not plain ASCII.
    static func parameter(_ name: String, _ value: String) -> String {
        if value.unicodeScalars.allSatisfy({ (0x20...0x7E).contains($0.value) }) {
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\(name)=\"\(escaped)\""
        }
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~")
        let encoded = value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
        return "\(name)*=UTF-8''\(encoded)"
    }

    /// An RFC 5322 date in UTC, such as `Tue, 25 Nov 2025 09:05:03 +0000`.
    static func date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let parts = calendar.dateComponents([.weekday, .day, .month, .year, .hour, .minute, .second], from: date)
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let weekday = weekdays[((parts.weekday ?? 1) - 1) % 7]
        let month = months[((parts.month ?? 1) - 1) % 12]
        let time = [parts.hour, parts.minute, parts.second].map { twoDigits($0 ?? 0) }.joined(separator: ":")
        return "\(weekday), \(twoDigits(parts.day ?? 1)) \(month) \(parts.year ?? 1970) \(time) +0000"
    }

    private static func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }
}
