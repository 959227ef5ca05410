extension HTTPClient {
    /// Header fields in the order given or received; names match case-insensitively, as HTTP says.
    public struct Headers: Sendable, Equatable, ExpressibleByDictionaryLiteral {
        /// One `name: value` field.
        public struct Field: Sendable, Equatable {
            public let name: String
            public let value: String
        }

        /// Every field, repeated names included, in order.
        public private(set) var fields: [Field]

        /// Headers from `(name, value)` pairs, keeping their order and repeats.
        public init(_ pairs: [(String, String)] = []) {
            fields = pairs.map { Field(name: $0.0, value: $0.1) }
        }

        /// Headers from a literal such as `["Content-Type": "application/json"]`, in written order.
        public init(dictionaryLiteral elements: (String, String)...) {
            self.init(elements)
        }

        /// The first value of `name`, compared case-insensitively.
        public subscript(name: String) -> String? {
            let wanted = name.lowercased()
            return fields.first { $0.name.lowercased() == wanted }?.value
        }

        /// Every value of `name` in order (e.g. several `Set-Cookie`).
        public func values(for name: String) -> [String] {
            let wanted = name.lowercased()
            return fields.filter { $0.name.lowercased() == wanted }.map(\.value)
        }

        /// Adds a field after the existing ones, even if the name is already present.
        public mutating func append(_ name: String, _ value: String) {
            fields.append(Field(name: name, value: value))
        }

        /// Whether a field named `name` is present.
        public func contains(_ name: String) -> Bool { self[name] != nil }
    }
}

extension HTTPClient.Headers {
    /// Parses the header block of one response: the status line is skipped and a line
    /// starting with whitespace continues the previous field (obsolete folding).
    init(responseLines lines: [String]) {
        var pairs: [(String, String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            if line.first == " " || line.first == "\t", let last = pairs.popLast() {
                pairs.append((last.0, last.1 + " " + Self.trimmed(Substring(line))))
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            pairs.append((String(line[..<colon]), Self.trimmed(line[line.index(after: colon)...])))
        }
        self.init(pairs)
    }

    private static func trimmed(_ text: Substring) -> String {
        String(text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }

    /// The request's fields as libcurl header lines, after checking they cannot
    /// inject other headers. Also stops libcurl from adding `Expect: 100-continue`
    /// (a stall of up to a second before bodies over 1 MiB, waiting for a `100 Continue`
    /// many servers never send) and a form `Content-Type` the caller did not ask for.
    func curlLines(hasBody: Bool) throws(CurlError) -> [String] {
        var lines: [String] = []
        for field in fields {
            guard Self.isToken(field.name) else {
                throw CurlError(.invalidRequest, message: "a header name is empty or not an HTTP token")
            }
            guard !field.value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                throw CurlError(.invalidRequest, message: "the value of header \(field.name) contains a line break")
            }
            // libcurl's syntax for sending a header with an empty value is `Name;`.
            lines.append(field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)")
        }
        if !contains("Expect") { lines.append("Expect:") }
        if hasBody, !contains("Content-Type") { lines.append("Content-Type:") }
        return lines
    }

    /// Whether `name` is a non-empty RFC 9110 token (header names, methods).
    static func isToken(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { byte in
                (0x21...0x7E).contains(byte) && !"\"(),/:;<=>?@[\\]{}".utf8.contains(byte)
            }
    }
}
