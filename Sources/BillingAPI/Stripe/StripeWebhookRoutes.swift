import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresClient
import TallyHTTP
import TallyStore
import UsageEvents

/// `POST /v1/stripe/webhook`: Stripe's events, verified (signature, 5-minute tolerance,
/// constant-time compare), then kept in `stripe_webhook_events` — the queue the
/// Invoicer applies them from; an event id seen before is acknowledged and ignored.
/// Without `STRIPE_WEBHOOK_SECRET` the endpoint answers 404: Stripe is off.
struct StripeWebhookRoutes {
    static let path = "/v1/stripe/webhook"
    let pool: PostgresPool
    let signature: StripeWebhookSignature?
    let clock: @Sendable () -> Date

    func register(on router: Router<TallyRequestContext>) {
        router.post(RouterPath(Self.path), use: receive)
    }

    @Sendable func receive(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard let signature else {
            throw APIError(.notFound, code: "STRIPE_DISABLED", message: "Stripe is not configured (set STRIPE_WEBHOOK_SECRET).")
        }
        // Over the body limit: 413 as every route answers it (a 500 before, which Stripe retries).
        let body = Array(try await request.collectBody(context: context).readableBytesView)
        do throws(StripeWebhookSignature.Failure) {
            try signature.verify(header: request.headers[HTTPField.Name("Stripe-Signature")!], body: body, now: clock())
        } catch {
            context.logger.warning("stripe webhook refused", metadata: ["reason": "\(error)"])
            throw APIError(
                .badRequest, code: "INVALID_SIGNATURE",
                message: error == .stale
                    ? "The signature's timestamp is outside the 5-minute tolerance." : "The Stripe-Signature header does not verify.",
                field: "Stripe-Signature")
        }
        guard let event = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let id = event["id"] as? String, let type = event["type"] as? String
        else { throw APIError.invalid("body", "is not a Stripe event (id and type are required)") }
        // Stripe's ids and types are printable ASCII; anything else (a NUL, which cut the stored
        // id short so a second event was taken for a replay of the first) is not Stripe's.
        for (field, value) in [("id", id), ("type", type)] where !Self.isStripeToken(value) {
            throw APIError.invalid(field, "is not a Stripe event \(field) (1 to 255 printable ASCII characters)")
        }
        let duplicate = try await !StripeWebhookEvents.record(id: id, type: type, payload: Self.storable(body), on: pool)
        context.logger.info(
            "stripe webhook received", metadata: ["stripe.event_id": "\(id)", "stripe.type": "\(type)", "duplicate": "\(duplicate)"])
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"received":true,"duplicate":\#(duplicate)}"#)))
    }

    static func isStripeToken(_ text: String) -> Bool {
        (1...255).contains(text.utf8.count) && text.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// The verified body as `jsonb` can hold it: a NUL character (`\u0000`, which PostgreSQL
    /// refuses, so the event answered 500 and Stripe retried it for days) becomes U+FFFD.
    static func storable(_ body: [UInt8]) -> String {
        let text = String(decoding: body, as: UTF8.self)
        guard text.contains("\\u0000"), let json = try? JSONParser.parse(body) else { return text }
        func cleaned(_ value: JSONValue) -> JSONValue {
            switch value {
            case .string(let string): .string(string.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}"))
            case .array(let items): .array(items.map(cleaned))
            case .object(let members):
                .object(
                    Dictionary(
                        uniqueKeysWithValues: members.map { (key, member) in
                            (key.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}"), cleaned(member))
                        }))
            default: value
            }
        }
        var writer = JSONWriter()
        writer.write(cleaned(json))
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
