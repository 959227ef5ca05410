import Foundation
import UsageEvents

/// The one JSON encoding of Tally's messages: snake_case keys as the types spell them,
/// sorted (equal messages give equal bytes), instants as RFC 3339 in UTC with
/// microseconds (PostgreSQL's precision, so a time read back equals the stored one),
/// decimals as exact strings. Decoding accepts any RFC 3339 time. Times go through the
/// byte-level `RFC3339` of UsageEvents: Foundation's ISO 8601 styles cost tens of
/// microseconds each on Linux, several per message.
enum MessageCoding {
    static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(format(date))
        }
        return Array(try encoder.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parse(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an RFC 3339 time: \(text)")
            }
            return date
        }
        return try decoder.decode(type, from: Data(body))
    }

    static func format(_ date: Date) -> String {
        RFC3339.format(date)
    }

    /// An instant inside a dedup key: whole seconds, a six-digit fraction only when
    /// there is one (`2026-01-31T00:00:00Z`). The keys written before messages were typed
    /// used this form; keeping it keeps "once per period" across an upgrade.
    static func keyTime(_ date: Date) -> String {
        let text = RFC3339.format(date)  // yyyy-mm-ddThh:mm:ss.ffffffZ
        return text.hasSuffix(".000000Z") ? String(text.dropLast(8)) + "Z" : text
    }

    static func parse(_ text: String) -> Date? {
        RFC3339.parse(text)
    }
}

/// A message body that is not a message of the kind expected; `reason` says what is
/// wrong in words an operator can act on (it becomes the park reason).
public struct MessageDecodingError: Error, CustomStringConvertible, Sendable, Equatable {
    public let reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { reason }

    /// The words of a `DecodingError`: which field, and what is wrong with it.
    static func explaining(_ error: any Error) -> MessageDecodingError {
        guard let decoding = error as? DecodingError else { return MessageDecodingError("body is not JSON: \(error)") }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch decoding {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return MessageDecodingError("field \(parent.isEmpty ? "" : parent + ".")\(key.stringValue) is missing")
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return MessageDecodingError("field \(path(context)) has the wrong type: \(context.debugDescription)")
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return MessageDecodingError("body is not JSON")
        case .dataCorrupted(let context):
            return MessageDecodingError("field \(path(context)) is invalid: \(context.debugDescription)")
        @unknown default:
            return MessageDecodingError("body cannot be read: \(decoding)")
        }
    }
}

/// The version envelope every message carries: `{"type": …, "version": 1, …}`.
struct MessageHeader: Decodable {
    let type: String
    let version: Int
}

extension KeyedEncodingContainer {
    /// Ids on the wire are lower-case UUIDs (RFC 9562's canonical text), as the database
    /// prints them; Foundation would write upper case. Every message's synthesized
    /// `Codable` in this module picks this overload for its `UUID` fields.
    mutating func encode(_ value: UUID, forKey key: Key) throws {
        try encode(value.uuidString.lowercased(), forKey: key)
    }
}
