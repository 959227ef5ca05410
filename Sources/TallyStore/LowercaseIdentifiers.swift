import CivilTime
import Foundation
import Logging

// One spelling of every id (issue 14): Foundation writes a UUID in upper case
// (`uuidString`), while usage events, logs, PDFs and `billing.events` use lower case,
// and a client comparing strings breaks on the difference. These overloads are more
// specific than the generic `encode(_:forKey:)`, so the Codable conformances and
// string interpolations of every module that imports TallyStore (the stores, Invoicing,
// the billing API) write ids in lower case. Input is accepted in any case:
// `UUID(uuidString:)` reads both.

extension KeyedEncodingContainer {
    /// Writes `value` as its lower-case text.
    public mutating func encode(_ value: UUID, forKey key: Key) throws {
        try encode(value.lowercasedText, forKey: key)
    }

    /// Writes `value`, when present, as its lower-case text.
    public mutating func encodeIfPresent(_ value: UUID?, forKey key: Key) throws {
        guard let value else { return }
        try encode(value.lowercasedText, forKey: key)
    }

    /// Writes every id of `values` as its lower-case text.
    public mutating func encode(_ values: [UUID], forKey key: Key) throws {
        try encode(values.map(\.lowercasedText), forKey: key)
    }
}

extension DefaultStringInterpolation {
    /// `"\(id)"` is the lower-case text, as in logs and messages elsewhere.
    public mutating func appendInterpolation(_ value: UUID) {
        appendLiteral(value.lowercasedText)
    }
}

extension Logger.MetadataValue.StringInterpolation {
    /// `metadata: ["tenant.id": "\(id)"]` logs the lower-case text too (swift-log's
    /// metadata values have an interpolation of their own).
    public mutating func appendInterpolation(_ value: UUID) {
        appendLiteral(value.lowercasedText)
    }
}
