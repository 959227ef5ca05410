import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import UsageEvents

extension Request {
    /// Decodes a JSON body of at most `context.maxUploadSize` bytes, turning every
    /// failure into a 4xx that names the field at fault (413 when too large).
    public func decodeJSON<Value: Decodable>(
        _ type: Value.Type, context: some RequestContext
    ) async throws -> Value {
        try Self.decode(Value.self, from: try await collectBody(context: context))
    }

    /// The body, at most `context.maxUploadSize` bytes (413 when larger).
    public func collectBody(context: some RequestContext) async throws -> ByteBuffer {
        let limit = context.maxUploadSize
        do {
            return try await body.collect(upTo: limit)
        } catch {
            throw APIError.tooLarge(limit: limit)
        }
    }

    /// Whether `buffer` holds nothing but JSON whitespace.
    static func isBlank(_ buffer: ByteBuffer) -> Bool {
        buffer.readableBytesView.allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
    }

    /// `buffer` as JSON, a decoding failure as the 400 that names the field.
    ///
    /// Read strictly first (`JSONParser`): a key sent twice (`{"plan": "a", …, "plan": "b"}`,
    /// which `JSONDecoder` reads as its last value) is refused naming it, and a body that
    /// is not JSON is refused naming where and why.
    private static func decode<Value: Decodable>(_ type: Value.Type, from buffer: ByteBuffer) throws -> Value {
        guard !isBlank(buffer) else { throw APIError.invalid("body", "is empty: send a JSON object with the request's fields") }
        let json: JSONValue
        do {
            json = try JSONParser.parse(buffer.readableBytesView)
        } catch {
            throw APIError.invalid(error.field.isEmpty ? "body" : error.field, error.refusal(withoutPath: ""))
        }
        if let closed = Value.self as? any ClosedRequestBody.Type, case .object(let members) = json {
            try closed.refuseUnknownFields(Set(members.keys))
        }
        if let field = Self.pathOfNUL(in: json) {
            // PostgreSQL's text cannot hold it: a name was stored cut at it ("Acme\u0000 Hidden"
            // as "Acme"; an address checked whole and stored as its first part), or a 500.
            throw APIError.invalid(field.isEmpty ? "body" : field, "holds a NUL character (\\u0000), which Tally cannot store: remove it")
        }
        do {
            return try JSONDecoder().decode(Value.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            // Foundation reports a number that does not fit its field (8.25 or 2⁶³ for an
            // integer) as "not valid JSON", with no path: the body parsed, so find the number.
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
                let (field, number) = numberAtFault(in: json, as: Value.self)
            {
                throw APIError.invalid(field, "must be a whole number within 64 bits; \(number.text.prefix(40)) is not")
            }
            throw APIError(decoding: error)
        }
    }

    /// The path of the number in `json` that `Value` cannot take: the first not-whole or
    /// too-large one whose replacement by 0 lets the body decode (or fail with a path).
    static func numberAtFault<Value: Decodable>(in json: JSONValue, as: Value.Type) -> (field: String, number: JSONNumber)? {
        var numbers: [([JSONPathStep], JSONNumber)] = []
        func collect(_ value: JSONValue, _ path: [JSONPathStep]) {
            switch value {
            case .number(let number): numbers.append((path, number))
            case .array(let items): for (index, item) in items.enumerated() { collect(item, path + [.index(index)]) }
            case .object(let members): for key in members.keys.sorted() { collect(members[key]!, path + [.key(key)]) }
            default: break
            }
        }
        collect(json, [])
        // Only a number that is not a whole 64-bit one can be at fault (a field of another
        // type would have failed with its path); a few tries at most.
        let suspects = numbers.filter { Int64($0.1.text) == nil }.prefix(16)
        for (path, number) in suspects {
            var writer = JSONWriter()
            writer.write(Self.replacing(path[...], in: json))
            do {
                _ = try JSONDecoder().decode(Value.self, from: Data(writer.bytes))
            } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
                continue
            } catch {}
            let field = path.reduce(into: "") { text, step in
                switch step {
                case .index(let index): text += "[\(index)]"
                case .key(let key): text += text.isEmpty ? key : ".\(key)"
                }
            }
            return (field, number)
        }
        return nil
    }

    /// The path of the first string (or key) in `json` holding U+0000, if any.
    static func pathOfNUL(in json: JSONValue) -> String? {
        func path(_ value: JSONValue, _ here: String) -> String? {
            switch value {
            case .string(let text): return text.utf8.contains(0) ? here : nil
            case .array(let items):
                for (index, item) in items.enumerated() {
                    if let found = path(item, "\(here)[\(index)]") { return found }
                }
                return nil
            case .object(let members):
                for key in members.keys.sorted() {
                    let field = here.isEmpty ? key : "\(here).\(key)"
                    if key.utf8.contains(0) { return here.isEmpty ? "body" : here }
                    if let found = path(members[key]!, field) { return found }
                }
                return nil
            default: return nil
            }
        }
        return path(json, "")
    }

    enum JSONPathStep {
        case key(String)
        case index(Int)
    }

    /// `json` with the value at `path` replaced by 0.
    private static func replacing(_ path: ArraySlice<JSONPathStep>, in json: JSONValue) -> JSONValue {
        guard let step = path.first else { return .number(0) }
        switch (step, json) {
        case (.index(let index), .array(var items)):
            items[index] = replacing(path.dropFirst(), in: items[index])
            return .array(items)
        case (.key(let key), .object(var members)):
            members[key] = replacing(path.dropFirst(), in: members[key]!)
            return .object(members)
        default:
            return json
        }
    }
}

extension APIError {
    /// A 400 naming the JSON path that failed to decode.
    public init(decoding error: DecodingError) {
        switch error {
        case .keyNotFound(let key, let context):
            self = .invalid(Self.path(context.codingPath + [key]), "is required")
        case .typeMismatch(let type, let context):
            self = .invalid(Self.path(context.codingPath, whole: "body"), "must be \(Self.jsonName(type))")
        case .valueNotFound(let type, let context):
            self = .invalid(Self.path(context.codingPath, whole: "body"), "must be \(Self.jsonName(type)), not null")
        case .dataCorrupted(let context):
            let field = context.codingPath.isEmpty ? "body" : Self.path(context.codingPath)
            self = .invalid(field, context.codingPath.isEmpty ? "is not valid JSON" : context.debugDescription)
        @unknown default:
            self = .invalid("body", "could not be decoded")
        }
    }

    /// `keys` as a field path (`charges[1].tiers`); `whole` when there are none.
    static func path(_ keys: [any CodingKey], whole: String = "") -> String {
        guard !keys.isEmpty else { return whole }
        return keys.reduce(into: "") { path, key in
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
    }

    private static func jsonName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Bool.Type: "true or false"
        case is Double.Type, is Decimal.Type: "a number"
        case _ where String(describing: type).hasPrefix("Dictionary<"): "a JSON object"
        case _ where String(describing: type).hasPrefix("Array<"): "a JSON array"
        default: "a valid \(type)"
        }
    }
}

extension Request {
    /// Like `decodeJSON`, but an empty body means "no options" and gives nil.
    public func decodeOptionalJSON<Value: Decodable>(
        _ type: Value.Type, context: some RequestContext
    ) async throws -> Value? {
        let buffer = try await collectBody(context: context)
        guard !Self.isBlank(buffer) else { return nil }
        return try Self.decode(Value.self, from: buffer)
    }
}

/// A request body that refuses keys it does not read: `{"at_period_ends": true}` is a 400
/// naming the key (and the field it resembles), not a cancellation today with the flag
/// silently dropped — as Stripe answers an unknown parameter. Its `CodingKeys`, the keys
/// decoding reads, are the fields it takes; only the body's top-level keys are checked.
public protocol ClosedRequestBody: Decodable {
    associatedtype CodingKeys: CodingKey & CaseIterable
}

extension ClosedRequestBody {
    /// The body's fields, in their declared order.
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    /// Throws the 400 for the first (by name) of `keys` that is not a field.
    static func refuseUnknownFields(_ keys: Set<String>) throws {
        let fields = fieldNames
        guard let unknown = keys.subtracting(fields).sorted().first else { return }
        throw APIError.invalid(UnknownField.echoed(unknown), UnknownField.refusal(unknown, fields: fields, of: "this request"))
    }
}
