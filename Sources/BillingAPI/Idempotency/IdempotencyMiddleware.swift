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
/// Stripe webhook, the dashboard's forms), without the header, or matching no route are
/// untouched.
struct IdempotencyMiddleware: RouterMiddleware {
    typealias Context = TallyRequestContext

    static let keyHeader = HTTPField.Name("Idempotency-Key")!
    static let replayedHeader = HTTPField.Name("Idempotent-Replayed")!

    let requests: IdempotentRequests

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard [.post, .patch, .delete].contains(request.method), let key = request.headers[Self.keyHeader],
            let principal = context.principal, context.endpointPath != nil
        else { return try await next(request, context) }
        guard IdempotentRequests.isWellFormed(key) else {
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
        let succeeded: (Response) -> Bool = { (200..<300).contains($0.status.code) }
        let outcome = try await requests.once(owner: owner, key: key, fingerprint: fingerprint, logger: context.logger, keeping: succeeded) {
            [request] in try await next(request, context)
        }
        switch outcome {
        case .answered(let response):
            return response
        case .replayed(let answer):
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
        }
    }
}

/// What became of a request sent with a key (`IdempotentRequests.once`).
enum OnceOutcome {
    /// It ran now: its answer (kept for retries when `keeping` said so).
    case answered(Response)
    /// It had run: the answer kept then.
    case replayed(IdempotentRequests.KeptAnswer)
    /// Its first sending is still running.
    case running
    /// The key was first used with another request.
    case usedForAnother(Date)
}

extension IdempotentRequests {
    /// Answers kept for retries are at most this big (the answers to writes are a few kB).
    static let largestKeptAnswer = 1 << 20

    /// Whether `key` may be an idempotency key: 1 to 255 printable ASCII characters.
    static func isWellFormed(_ key: String) -> Bool {
        (1...255).contains(key.utf8.count) && key.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// Runs `handle` for the first request with `key` and keeps its answer when `keeping`
    /// says so (a success), or gives the key back (a failure, or an answer too big to
    /// keep); a later request with the key gets what the first left. The API's
    /// `IdempotencyMiddleware` and the dashboard's add forms both answer through it.
    func once(
        owner: String, key: String, fingerprint: Data, logger: Logger, keeping: (Response) -> Bool,
        handle: () async throws -> Response
    ) async throws -> OnceOutcome {
        let claim: UUID
        switch try await self.claim(principal: owner, key: key, fingerprint: fingerprint) {
        case .run(let id): claim = id
        case .replay(let answer): return .replayed(answer)
        case .running: return .running
        case .usedForAnother(let since): return .usedForAnother(since)
        }
        func giveBack() async {
            do {
                try await release(principal: owner, key: key, claim: claim)
            } catch {
                logger.error("an Idempotency-Key could not be given back; a retry runs after \(Self.abandonedAfter) s: \(error)")
            }
        }
        let response: Response
        do {
            response = try await handle()
        } catch {
            await giveBack()
            throw error
        }
        guard keeping(response) else {
            await giveBack()
            return .answered(response)
        }
        let collector = BodyCollector()
        do {
            try await response.body.write(collector)
        } catch {
            await giveBack()
            throw error
        }
        let body = collector.buffer
        guard body.readableBytes <= Self.largestKeptAnswer else {
            logger.warning("an answer over \(Self.largestKeptAnswer) bytes is not kept for Idempotency-Key retries")
            await giveBack()
            return .answered(Response(status: response.status, headers: response.headers, body: .init(byteBuffer: body)))
        }
        let answer = KeptAnswer(
            status: response.status.code, contentType: response.headers[.contentType], location: response.headers[.location],
            body: Data(body.readableBytesView))
        // Done: keep the answer through a database blip, since a key left running is run
        // again by a retry after `abandonedAfter`.
        for attempt in 1...3 {
            do {
                try await complete(principal: owner, key: key, claim: claim, answer: answer)
                break
            } catch {
                logger.error("the answer of an Idempotency-Key request could not be kept (attempt \(attempt) of 3): \(error)")
                if attempt < 3 { try? await Task.sleep(for: .milliseconds(200 * attempt)) }
            }
        }
        return .answered(Response(status: response.status, headers: response.headers, body: .init(byteBuffer: body)))
    }
}

/// Collects a response body written through it.
final class BodyCollector: ResponseBodyWriter {
    private(set) var buffer = ByteBuffer()

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        self.buffer.writeBuffer(&buffer)
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
