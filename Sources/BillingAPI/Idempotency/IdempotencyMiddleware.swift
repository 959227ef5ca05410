import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TallyHTTP
import TallyStore

/// `Idempotency-Key` on POST, PATCH and DELETE, as Stripe's API has it: a client that did
/// not hear the answer (a timeout, a dropped connection) sends the request again with the
/// same key, and is answered with the first answer (`Idempotent-Replayed: true`) instead of
/// getting a second tenant, alert, endpoint, key or billing run.
///
/// Only successes are kept. A request that failed did nothing (handlers write in one
/// transaction, and throw before it commits), so its key is given back and a retry runs
/// again. The same key with another method, path or body is a 400; a key whose first
/// request is still running, a 409 to retry after. Requests without a principal (the
/// Stripe webhook, the dashboard's forms) and without the header are untouched.
struct IdempotencyMiddleware: RouterMiddleware {
    typealias Context = TallyRequestContext

    static let keyHeader = HTTPField.Name("Idempotency-Key")!
    static let replayedHeader = HTTPField.Name("Idempotent-Replayed")!
    /// Answers bigger than this are not kept (the API's answers to writes are a few kB).
    static let largestKeptAnswer = 1 << 20

    let requests: IdempotentRequests

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard [.post, .patch, .delete].contains(request.method), let key = request.headers[Self.keyHeader],
            let principal = context.principal
        else { return try await next(request, context) }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw APIError.invalid(
                "Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces; a new UUID per request is usual")
        }
        let owner: String
        switch principal {
        case .admin: owner = "admin"
        case .tenant(let id): owner = id.uuidString.lowercased()
        }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let fingerprint = IdempotentRequests.fingerprint(
            method: request.method.rawValue, target: request.uri.description, body: body.readableBytesView)
        switch try await requests.claim(principal: owner, key: key, fingerprint: fingerprint) {
        case .replay(let answer):
            var headers: HTTPFields = [Self.replayedHeader: "true"]
            if let type = answer.contentType { headers[.contentType] = type }
            if let location = answer.location { headers[.location] = location }
            return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
        case .running:
            var error = APIError(
                .conflict, code: "IDEMPOTENT_REQUEST_RUNNING",
                message: "the first request with this Idempotency-Key is still being answered; retry in a second for its answer",
                field: "Idempotency-Key")
            error.headers[.retryAfter] = "1"
            throw error
        case .usedForAnother(let since):
            throw APIError(
                .badRequest, code: "IDEMPOTENCY_KEY_REUSED",
                message:
                    "was used since \(Date.ISO8601FormatStyle().format(since)) for another request (method, path or body); "
                    + "send a new key with a new request",
                field: "Idempotency-Key")
        case .run:
            break
        }
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            await release(owner, key, context: context)
            throw error
        }
        guard (200..<300).contains(response.status.code) else {
            await release(owner, key, context: context)
            return response
        }
        let collector = BodyCollector(limit: Self.largestKeptAnswer)
        try await response.body.write(collector)
        guard let bytes = collector.buffer else {
            // Too big to keep: answered, but a retry would run again.
            context.logger.warning("an answer over \(Self.largestKeptAnswer) bytes is not kept for Idempotency-Key retries")
            await release(owner, key, context: context)
            return Response(status: response.status, headers: response.headers, body: .init(byteBuffer: collector.seen))
        }
        let answer = IdempotentRequests.KeptAnswer(
            status: response.status.code, contentType: response.headers[.contentType], location: response.headers[.location],
            body: Data(bytes.readableBytesView))
        do {
            try await requests.complete(principal: owner, key: key, answer: answer)
        } catch {
            // Done, but not kept: the key stays running, and a retry after
            // `abandonedAfter` runs again.
            context.logger.error("the answer of an Idempotency-Key request could not be kept: \(error)")
        }
        return Response(status: response.status, headers: response.headers, body: .init(byteBuffer: bytes))
    }

    private func release(_ owner: String, _ key: String, context: Context) async {
        do {
            try await requests.release(principal: owner, key: key)
        } catch {
            context.logger.error("an Idempotency-Key could not be released after its request failed: \(error)")
        }
    }
}

/// Collects a response body written through it, up to `limit` bytes.
final class BodyCollector: ResponseBodyWriter {
    let limit: Int
    /// Every byte written.
    private(set) var seen = ByteBuffer()

    init(limit: Int) {
        self.limit = limit
    }

    /// The body, or nil when it is over `limit`.
    var buffer: ByteBuffer? { seen.readableBytes <= limit ? seen : nil }

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        seen.writeBuffer(&buffer)
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
