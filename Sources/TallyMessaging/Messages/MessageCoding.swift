import Foundation

/// The one JSON encoding of Tally's messages: snake_case keys as the types spell them,
/// sorted (equal messages give equal bytes), instants as RFC 3339 in UTC with
/// milliseconds, decimals as exact strings. Decoding accepts RFC 3339 with or without
/// fractional seconds.
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
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
    }

    /// An instant inside a dedup key: whole seconds, a six-digit fraction only when
    /// there is one (`2026-01-31T00:00:00Z`). The keys written before messages were typed
    /// used this form; keeping it keeps "once per period" across an upgrade.
    static func keyTime(_ date: Date) -> String {
        let microseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let seconds = Date(timeIntervalSince1970: TimeInterval(microseconds.floorDivided(by: 1_000_000)))
        let fraction = microseconds - microseconds.floorDivided(by: 1_000_000) * 1_000_000
        let whole = seconds.formatted(Date.ISO8601FormatStyle(timeZone: .gmt)).dropLast()  // without "Z"
        guard fraction != 0 else { return whole + "Z" }
        let digits = String(fraction)
        return whole + "." + String(repeating: "0", count: 6 - digits.count) + digits + "Z"
    }

    static func parse(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor < 0) ? quotient - 1 : quotient
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
