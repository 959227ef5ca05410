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
        // A UTF-8 byte order mark (PowerShell and Notepad write one) is not part of the body.
        let data = data.starts(with: JSONParser.byteOrderMark) ? Data(data.dropFirst(JSONParser.byteOrderMark.count)) : data
        guard let first = data.first(where: { !Self.isWhitespace($0) }) else {
            throw IngestBodyError(field: "body", message: "is empty: send an event, a JSON array of events, or NDJSON")
        }
        guard String(data: data, encoding: .utf8) != nil else {
            throw IngestBodyError(field: "body", message: "is not valid UTF-8")
        }
        let isNDJSON = contentType?.lowercased().contains("ndjson") ?? false
        if first == UInt8(ascii: "["), !isNDJSON {
            let parsed: JSONValue
            do {
                parsed = try JSONParser.parse(data)
            } catch {
                throw IngestBodyError(notJSON: error, in: "events")
            }
            guard case .array(let events) = parsed else { throw IngestBodyError(field: "body", message: "is not a JSON array") }
            guard !events.isEmpty else { throw IngestBodyError(field: "body", message: "holds no events") }
            guard events.count <= maximumEvents else { throw .tooManyEvents }
            return events
        }
        if first == UInt8(ascii: "{"), !isNDJSON {
            do {
                return [try JSONParser.parse(data)]
            } catch  where error.message == JSONParseError.trailingText {
                // More after the first object: NDJSON sent without its content type.
            } catch {
                throw IngestBodyError(notJSON: error, in: "events[0]")
            }
        }
        return try lines(data)
    }

    private static func lines(_ data: Data) throws(IngestBodyError) -> [JSONValue] {
        var events: [JSONValue] = []
        for (number, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { !isWhitespace($0) }) else { continue }
            guard events.count < maximumEvents else { throw .tooManyEvents }
            do {
                events.append(try JSONParser.parse(line))
            } catch {
                throw IngestBodyError(notJSON: error, in: "body.line[\(number + 1)]", topLevel: "body.line[\(number + 1)]", where: "of the line")
            }
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

extension IngestBodyError {
    /// A body (or NDJSON line) that is not JSON, or holds a key twice: the field is where
    /// the parser gave up —
    /// `events[3].id` for a key sent twice in the fourth event (`prefix` + the error's
    /// path), `topLevel` when the error is in the outermost value itself; `offsets` says what
    /// the byte offset counts from when not the body (`of the line`).
    init(notJSON error: JSONParseError, in prefix: String, topLevel: String = "body", where offsets: String = "") {
        self.field = error.path.isEmpty ? topLevel : prefix + error.path
        self.message = error.refusal(withoutPath: offsets) + "; nothing was accepted"
    }
}
