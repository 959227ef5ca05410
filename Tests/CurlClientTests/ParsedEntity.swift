import Foundation

/// A MIME entity read back from CRLF text, as a mail reader would: unfolded headers,
/// multipart bodies split at their boundary, bodies decoded per their transfer encoding.
/// Written apart from the renderer, so the tests check the wire format, not the code.
struct ParsedEntity {
    let headers: [(name: String, value: String)]
    let rawBody: String

    init(_ text: String) throws {
        guard let blank = text.range(of: "\r\n\r\n") else { throw ParseError("no blank line after the headers") }
        rawBody = String(text[blank.upperBound...])
        // Unfolding removes the CRLF of a fold and keeps the whitespace after it.
        let unfolded = text[..<blank.lowerBound].replacingOccurrences(of: "\r\n ", with: " ")
            .replacingOccurrences(of: "\r\n\t", with: "\t")
        headers = try unfolded.components(separatedBy: "\r\n").map { line in
            guard let colon = line.firstIndex(of: ":") else { throw ParseError("header line without a colon: \(line)") }
            return (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
    }

    /// The first value of `name`, case-insensitively, unfolded but not decoded.
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The value of `name` with RFC 2047 encoded-words decoded.
    func decodedHeader(_ name: String) -> String? {
        header(name).map(ParsedEntity.decodingEncodedWords)
    }

    /// `type/subtype` of Content-Type, lowercased; `text/plain` when absent.
    var mediaType: String {
        (header("Content-Type") ?? "text/plain").split(separator: ";")[0].trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// A parameter of a header such as `boundary` or `filename`, RFC 2231 form included.
    func parameter(_ name: String, of headerName: String) -> String? {
        guard let value = header(headerName) else { return nil }
        for piece in value.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            if pair[0].lowercased() == name.lowercased() {
                return String(pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
                    .replacingOccurrences(of: "\\\"", with: "\"")
            }
            if pair[0].lowercased() == name.lowercased() + "*", let quote = pair[1].range(of: "''") {
                return pair[1][quote.upperBound...].removingPercentEncoding
            }
        }
        return nil
    }

    /// The parts of a multipart entity, split at `--boundary` lines.
    func parts() throws -> [ParsedEntity] {
        guard mediaType.hasPrefix("multipart/"), let boundary = parameter("boundary", of: "Content-Type") else {
            throw ParseError("\(mediaType) is not multipart with a boundary")
        }
        let delimiter = "--" + boundary
        guard rawBody.hasPrefix(delimiter + "\r\n"), rawBody.contains("\r\n" + delimiter + "--") else {
            throw ParseError("multipart body does not open and close with its boundary")
        }
        let chunks = rawBody.components(separatedBy: "\r\n" + delimiter)
        // The first chunk follows the opening delimiter line; each later one starts with the
        // CRLF ending its delimiter line; the last is the closing `--` and the epilogue.
        let first = String(chunks[0].dropFirst((delimiter + "\r\n").count))
        let middle = try chunks.dropFirst().dropLast().map { chunk in
            guard chunk.hasPrefix("\r\n") else { throw ParseError("text after a boundary on its line") }
            return String(chunk.dropFirst())
        }
        return try ([first] + middle).map(ParsedEntity.init)
    }

    /// Every non-multipart entity, depth first.
    func leaves() throws -> [ParsedEntity] {
        guard mediaType.hasPrefix("multipart/") else { return [self] }
        return try parts().flatMap { try $0.leaves() }
    }

    /// The body decoded per Content-Transfer-Encoding.
    func decodedBody() throws -> Data {
        switch header("Content-Transfer-Encoding")?.lowercased() {
        case "base64":
            guard let data = Data(base64Encoded: rawBody.replacingOccurrences(of: "\r\n", with: "")) else {
                throw ParseError("invalid base64")
            }
            return data
        case "quoted-printable":
            return try ParsedEntity.decodingQuotedPrintable(rawBody)
        default:
            return Data(rawBody.utf8)
        }
    }

    func decodedText() throws -> String {
        String(decoding: try decodedBody(), as: UTF8.self)
    }

    static func decodingQuotedPrintable(_ text: String) throws -> Data {
        let bytes = Array(text.replacingOccurrences(of: "=\r\n", with: "").utf8)
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "=") else {
                output.append(bytes[index])
                index += 1
                continue
            }
            guard index + 2 < bytes.count, let byte = UInt8(String(decoding: bytes[index + 1...index + 2], as: UTF8.self), radix: 16) else {
                throw ParseError("bad quoted-printable escape")
            }
            output.append(byte)
            index += 3
        }
        return Data(output)
    }

    /// Decodes `=?UTF-8?B?…?=` words; the space between two adjacent encoded-words is dropped.
    static func decodingEncodedWords(_ value: String) -> String {
        let words = value.split(separator: " ", omittingEmptySubsequences: false).map { word in
            guard word.hasPrefix("=?UTF-8?B?"), word.hasSuffix("?="),
                let bytes = Data(base64Encoded: String(word.dropFirst(10).dropLast(2)))
            else { return (text: String(word), isEncoded: false) }
            return (text: String(decoding: bytes, as: UTF8.self), isEncoded: true)
        }
        var result = words.first?.text ?? ""
        for (previous, word) in zip(words, words.dropFirst()) {
            result += (previous.isEncoded && word.isEncoded ? "" : " ") + word.text
        }
        return result
    }

    struct ParseError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
