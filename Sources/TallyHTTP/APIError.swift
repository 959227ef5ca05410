import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import UsageEvents

/// An error answered to an HTTP client in SPEC §4's shape:
/// `{"error": {"code": "...", "message": "...", "field": "..."}}`.
///
/// `code` is stable for programs, `message` says what to do next, `field` names the
/// part of the request at fault (a JSON path such as `events[3].quantity`).
public struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public let field: String?
    /// Extra structured detail (e.g. every offending index of a refused batch).
    public let details: [FieldProblem]
    /// Headers sent with the error (e.g. `x-request-id`, `retry-after`).
    public var headers: HTTPFields = [:]

    public init(
        _ status: HTTPResponse.Status, code: String, message: String, field: String? = nil,
        details: [FieldProblem] = []
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details
    }

    /// The same error, tagged with the request id the logs carry.
    public func withRequestID(_ id: String) -> APIError {
        var copy = self
        copy.headers[.requestID] = id
        return copy
    }

    public var description: String { "\(status.code) \(code): \(message)" + (field.map { " (field \($0))" } ?? "") }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = ErrorBody(error: .init(code: code, message: message, field: field, details: details.isEmpty ? nil : details))
        var buffer = ByteBuffer()
        buffer.writeBytes(try JSONEncoder.tally.encode(body))
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: buffer))
    }

    private struct ErrorBody: Encodable {
        struct Detail: Encodable {
            let code: String
            let message: String
            let field: String?
            let details: [FieldProblem]?
        }
        let error: Detail
    }
}

/// One problem with one field of a request, used to list every problem at once.
public struct FieldProblem: Codable, Sendable, Equatable {
    public let field: String
    public let message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
}

extension APIError {
    /// 400: the request is malformed; `field` names what to fix.
    public static func invalid(_ field: String, _ message: String) -> APIError {
        APIError(.badRequest, code: "INVALID_REQUEST", message: message, field: field)
    }

    /// 401: no credentials were presented.
    public static let unauthenticated = APIError(
        .unauthorized, code: "UNAUTHENTICATED",
        message: "Send `Authorization: Bearer <api key>` (a tenant API key or the admin token).")

    /// 401: the presented credentials are nobody's.
    public static let invalidAPIKey = APIError(
        .unauthorized, code: "INVALID_API_KEY",
        message: "The API key is unknown or revoked; create a new one with POST /v1/tenants/{id}/api-keys.")

    /// 403: the principal is known but may not do this.
    public static func forbidden(_ message: String) -> APIError {
        APIError(.forbidden, code: "FORBIDDEN", message: message)
    }

    /// 404: nothing by that id that this principal may see; `field` names where the id
    /// was given (`id`, the path's, unless a parameter or body field named it).
    public static func notFound(_ what: String, field: String = "id") -> APIError {
        APIError(.notFound, code: "NOT_FOUND", message: "No \(what) with that id is visible to this API key.", field: field)
    }

    /// 413: the body exceeds the endpoint's limit.
    public static func tooLarge(limit: Int) -> APIError {
        APIError(.contentTooLarge, code: "PAYLOAD_TOO_LARGE", message: "The request body exceeds \(limit) bytes; split it.", field: "body")
    }

    /// 503: a dependency (database, broker) is unavailable; retrying later is safe.
    public static let unavailable = APIError(
        .serviceUnavailable, code: "UNAVAILABLE", message: "A backing service is unavailable; retry with backoff.")

    /// 500: a bug or an unexpected failure; the request id in the logs tells which.
    public static func internalError(requestID: String) -> APIError {
        APIError(
            .internalServerError, code: "INTERNAL",
            message: "Unexpected error; report request id \(requestID) to the operator.")
    }
}

extension JSONEncoder {
    /// Tally's JSON output: snake_case keys as written in the types, sorted for stable diffs.
    public static var tally: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Self.instantText(date))
        }
        return encoder
    }

    /// An instant as the API writes it: UTC with milliseconds (`2026-11-30T14:00:00.000Z`),
    /// or microseconds when it has them (`…00.456789Z`). Times are kept to the microsecond
    /// (PostgreSQL's precision): a subscription started at `.456789` printed `.456`, and a
    /// usage query from the printed start counted events the bill did not.
    public static func instantText(_ date: Date) -> String {
        let text = RFC3339.format(date)
        // Years outside 0000–9999 are not RFC 3339: Foundation's ISO 8601 form, as before.
        guard text.utf8.count == 27 else { return Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date) }
        return text.hasSuffix("000Z") ? String(text.dropLast(4)) + "Z" : text
    }
}

extension HTTPField.Name {
    /// `x-request-id`: the id under which the server logged the request.
    public static var requestID: HTTPField.Name { HTTPField.Name("x-request-id")! }
}
