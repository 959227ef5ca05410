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

    /// `buffer` as JSON, a decoding failure as the 400 that names the field.
    ///
    /// Read strictly first (`JSONParser`): a key sent twice (`{"plan": "a", …, "plan": "b"}`,
    /// which `JSONDecoder` reads as its last value) is refused naming it, and a body that
    /// is not JSON is refused naming where and why.
    private static func decode<Value: Decodable>(_ type: Value.Type, from buffer: ByteBuffer) throws -> Value {
        do {
            _ = try JSONParser.parse(buffer.readableBytesView)
        } catch {
            let field = error.path.hasPrefix(".") ? String(error.path.dropFirst()) : error.path
            throw APIError.invalid(
                field.isEmpty ? "body" : field,
                (error.duplicateKey == nil ? "is not valid JSON: " : "") + "\(error.message) (byte \(error.offset))")
        }
        do {
            return try JSONDecoder().decode(Value.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError(decoding: error)
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
            self = .invalid(Self.path(context.codingPath), "must be \(Self.jsonName(type))")
        case .valueNotFound(let type, let context):
            self = .invalid(Self.path(context.codingPath), "must be \(Self.jsonName(type)), not null")
        case .dataCorrupted(let context):
            let field = context.codingPath.isEmpty ? "body" : Self.path(context.codingPath)
            self = .invalid(field, context.codingPath.isEmpty ? "is not valid JSON" : context.debugDescription)
        @unknown default:
            self = .invalid("body", "could not be decoded")
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        keys.reduce(into: "") { path, key in
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
        guard buffer.readableBytes > 0 else { return nil }
        return try Self.decode(Value.self, from: buffer)
    }
}
