import Foundation
import RabbitMQClient
import TallyMessaging
import UsageEvents

/// A batch of usage events as one AMQP message (SPEC §3): a JSON array of 1 to 1000
/// events, persistent, `content_type: application/json`, a unique `message_id`,
/// `x-tally-schema: usage.v1`, routing key `usage.v1` on exchange `usage`, and the
/// caller's W3C `traceparent` when it has one.
public struct UsageBatch: Sendable, Equatable {
    public static let maxEvents = 1000

    public let messageID: String
    public let body: [UInt8]
    public let traceparent: String?
    /// When its events were accepted (validated against the age limit), sent as the
    /// message's `timestamp`: a worker judges the age limit against it, so an event
    /// accepted minutes before its 90th day is not refused for the time it spent in a
    /// spool, a retry queue or a backlog (SPEC §5: none is lost). Nil for a spool record
    /// written before this was kept: its message is stamped when published.
    public let acceptedAt: Date?

    /// Encodes `events` (1 to 1000 of them), accepted at `acceptedAt`.
    public init(
        events: some Collection<UsageEvent>, traceparent: String? = nil, messageID: String = EventID.make(), acceptedAt: Date = Date()
    ) {
        precondition((1...Self.maxEvents).contains(events.count), "a usage batch holds 1 to 1000 events")
        self.messageID = messageID
        self.body = JSONWriter.encode(events)
        self.traceparent = traceparent
        self.acceptedAt = acceptedAt
    }

    init(messageID: String, body: [UInt8], traceparent: String?, acceptedAt: Date?) {
        self.messageID = messageID
        self.body = body
        self.traceparent = traceparent
        self.acceptedAt = acceptedAt
    }

    /// Splits `events` into batches of at most 1000, in order.
    public static func batches(of events: [UsageEvent], traceparent: String? = nil, acceptedAt: Date = Date()) -> [UsageBatch] {
        stride(from: 0, to: events.count, by: maxEvents).map { start in
            UsageBatch(events: events[start..<min(start + maxEvents, events.count)], traceparent: traceparent, acceptedAt: acceptedAt)
        }
    }

    /// The message to publish, mandatory so a missing binding is noticed, not lost.
    public var message: OutgoingMessage { message(exchange: ExchangeName.usage) }

    /// The message, published to `exchange` (tests use a private one).
    func message(exchange: String) -> OutgoingMessage {
        var headers: [String: AMQPFieldValue] = [HeaderName.schema: .string("usage.v1")]
        if let traceparent { headers[HeaderName.traceparent] = .string(traceparent) }
        return OutgoingMessage(
            exchange: exchange, routingKey: RoutingKey.usageV1, body: body,
            properties: AMQPProperties(
                contentType: "application/json", messageID: messageID, persistent: true,
                timestamp: Int64((acceptedAt ?? Date()).timeIntervalSince1970.rounded(.down)), headers: headers),
            mandatory: true)
    }

    // MARK: Spool records: message id, traceparent, `@` and the acceptance time in
    // milliseconds since 1970, body, separated by newlines. The body is a JSON array, so a
    // record of before the acceptance time (id, traceparent, body) reads as well.

    /// The batch as one spool record (the body is JSON and holds no raw newline).
    var spoolRecord: [UInt8] {
        var record = Array(messageID.utf8) + [0x0A] + Array((traceparent ?? "").utf8) + [0x0A]
        if let acceptedAt { record += Array("@\(Int64((acceptedAt.timeIntervalSince1970 * 1000).rounded(.down)))".utf8) + [0x0A] }
        return record + body
    }

    /// The batch a spool record holds (the message id, traceparent, acceptance time and
    /// body it was spooled with), or nil when the record is not one — e.g. a dead letter to replay.
    public init?(spoolRecord record: [UInt8]) {
        guard let first = record.firstIndex(of: 0x0A),
            let second = record[(first + 1)...].firstIndex(of: 0x0A)
        else { return nil }
        let trace = String(decoding: record[(first + 1)..<second], as: UTF8.self)
        var bodyStart = second + 1
        var acceptedAt: Date?
        if record[bodyStart...].first == UInt8(ascii: "@") {
            guard let end = record[bodyStart...].firstIndex(of: 0x0A),
                let milliseconds = Int64(String(decoding: record[(bodyStart + 1)..<end], as: UTF8.self))
            else { return nil }
            acceptedAt = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
            bodyStart = end + 1
        }
        self.init(
            messageID: String(decoding: record[..<first], as: UTF8.self),
            body: Array(record[bodyStart...]),
            traceparent: trace.isEmpty ? nil : trace, acceptedAt: acceptedAt)
    }
}
