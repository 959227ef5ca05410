/// Text made safe to place in HTML, in an element or a quoted attribute: `&`, `<`, `>`,
/// `"` and `'` become character references.
///
/// It works on Unicode scalars, never on `Character`s: a `Character` is a grapheme
/// cluster, and a prepended mark before `<` (U+0600) or a combining mark after `"`
/// (U+0301) makes the pair one `Character` that equals neither, so an escaper comparing
/// characters lets them through — as swift-mustache's own HTML escaping and Foundation's
/// `replacingOccurrences` do. A browser parses scalars, so that is what is compared here.
/// The invoice emails and every dashboard page escape with this one function.
public enum HTMLText {
    public static func escape(_ text: String) -> String {
        guard text.utf8.contains(where: { "&<>\"'".utf8.contains($0) }) else { return text }
        var escaped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": escaped.append(contentsOf: "&amp;".unicodeScalars)
            case "<": escaped.append(contentsOf: "&lt;".unicodeScalars)
            case ">": escaped.append(contentsOf: "&gt;".unicodeScalars)
            case "\"": escaped.append(contentsOf: "&quot;".unicodeScalars)
            case "'": escaped.append(contentsOf: "&#39;".unicodeScalars)
            default: escaped.append(scalar)
            }
        }
        return String(escaped)
    }
}
