import Testing

@testable import Notifications

@Suite("HTML escaping, scalar by scalar")
struct HTMLTextTests {
    /// Scalars that join their neighbours into one grapheme cluster (a prepended mark, a
    /// combining accent, a zero-width joiner, a variation selector), the five that must be
    /// escaped, and plain letters.
    static let pool: [Unicode.Scalar] = [
        "\u{0600}", "\u{0890}", "\u{06DD}", "\u{0301}", "\u{200D}", "\u{FE0F}", "<", ">", "&", "\"", "'", "a", "b", "é", "=", " ",
    ]

    /// Reads the references back (the five this escaper writes), scalar by scalar.
    static func unescape(_ text: String) -> String? {
        var scalars = Substring(text).unicodeScalars[...]
        var out = String.UnicodeScalarView()
        while let scalar = scalars.first {
            guard scalar == "&" else {
                out.append(scalar)
                scalars.removeFirst()
                continue
            }
            let references: [(String, Unicode.Scalar)] = [("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'")]
            guard let (reference, original) = references.first(where: { scalars.starts(with: $0.0.unicodeScalars) }) else { return nil }
            out.append(original)
            scalars.removeFirst(reference.unicodeScalars.count)
        }
        return String(out)
    }

    @Test("no markup scalar survives, whatever it is joined to, and the text reads back whole (random strings)")
    func randomText() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...24, using: &generator)
            var text = String.UnicodeScalarView()
            for _ in 0..<length { text.append(Self.pool.randomElement(using: &generator)!) }
            let input = String(text)
            let escaped = HTMLText.escape(input)
            #expect(!escaped.unicodeScalars.contains { "<>\"'".unicodeScalars.contains($0) }, "\(input.unicodeScalars.map(\.value))")
            #expect(try #require(Self.unescape(escaped)).unicodeScalars.elementsEqual(input.unicodeScalars))
        }
    }

    @Test("the clusters that fooled the character-wise escapers")
    func knownClusters() {
        #expect(HTMLText.escape("\u{0600}<meta x\u{0600}>") == "\u{0600}&lt;meta x\u{0600}&gt;")
        #expect(HTMLText.escape("a\"\u{0301} &\u{0301}amp; <\u{200D}b") == "a&quot;\u{0301} &amp;\u{0301}amp; &lt;\u{200D}b")
        #expect(HTMLText.escape("plain text") == "plain text")
    }
}
