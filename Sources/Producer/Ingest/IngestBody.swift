import Foundation
import UsageEvents

/// The body of `POST /v1/events`: one event object, a JSON array of events, or
/// NDJSON (one event object per line). Parsing keeps numbers exact and refuses
/// invalid UTF-8, naming what is wrong.
enum IngestBody {
    /// The most events one request may carry (SPEC §4; documented in the README): a
    /// client with more sends several requests. Bounds the work and the refusal of one.
    static let maximumEvents = 10_000

    /// The event objects of `data`, in order.
    static func parse(_ data: Data, contentType: String?) throws(IngestBodyError) -> [JSONValue] {
        guard let first = data.first(where: { !Self.isWhitespace($0) }) else {
            throw IngestBodyError(field: "body", message: "is empty: send an event, a JSON array of events, or NDJSON")
        }
        guard String(data: data, encoding: .utf8) != nil else {
            throw IngestBodyError(field: "body", message: "is not valid UTF-8")
        }
        let isNDJSON = contentType?.lowercased().contains("ndjson") ?? false
        if first == UInt8(ascii: "["), !isNDJSON {
            guard case .array(let events)? = try? JSONParser.parse(data) else {
                throw IngestBodyError(field: "body", message: "is not a valid JSON array")
            }
            guard !events.isEmpty else { throw IngestBodyError(field: "body", message: "holds no events") }
            guard events.count <= maximumEvents else { throw .tooManyEvents }
            return events
        }
        if !isNDJSON, let single = try? JSONParser.parse(data) {
            return [single]
        }
        return try lines(data)
    }

    private static func lines(_ data: Data) throws(IngestBodyError) -> [JSONValue] {
        var events: [JSONValue] = []
        for (number, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { !isWhitespace($0) }) else { continue }
            guard events.count < maximumEvents else { throw .tooManyEvents }
            guard let event = try? JSONParser.parse(line) else {
                throw IngestBodyError(field: "body.line[\(number + 1)]", message: "is not valid JSON")
            }
            events.append(event)
        }
        guard !events.isEmpty else { throw IngestBodyError(field: "body", message: "holds no events") }
        return events
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }
}

/// A body that cannot be read as events at all.
struct IngestBodyError: Error, Equatable {
    let field: String
    let message: String

    /// More than `IngestBody.maximumEvents` events: 413, naming the limit.
    static let tooManyEvents = IngestBodyError(
        field: "body", message: "holds more than \(IngestBody.maximumEvents) events: split it into requests of at most \(IngestBody.maximumEvents)")
}
