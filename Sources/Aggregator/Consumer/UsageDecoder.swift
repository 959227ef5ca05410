import CivilTime
import Foundation
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyStore
import UsageEvents

/// One usage message as the Aggregator received it.
struct UsageMessage: Sendable {
    let deliveryTag: UInt64
    let messageID: String?
    let schema: String?
    let body: [UInt8]
    /// The message's timestamp: when its events were accepted (the age limit counts from it).
    let acceptedAt: Date?

    init(deliveryTag: UInt64, messageID: String?, schema: String?, body: [UInt8], acceptedAt: Date? = nil) {
        self.deliveryTag = deliveryTag
        self.messageID = messageID
        self.schema = schema
        self.body = body
        self.acceptedAt = acceptedAt
    }

    init(_ delivery: Delivery) {
        self.init(
            deliveryTag: delivery.deliveryTag, messageID: delivery.properties.messageID,
            schema: delivery.properties.headers[HeaderName.schema]?.stringValue, body: delivery.body,
            acceptedAt: delivery.properties.timestamp.map { Date(timeIntervalSince1970: Double($0)) })
    }
}

/// A message that cannot be read as a usage batch at all: it goes to the parking-lot
/// queue whole, with `reason` in a header.
struct UnreadableMessage: Sendable, Equatable {
    let deliveryTag: UInt64
    let reason: String
}

/// What a set of messages holds: the valid events as COPY rows for the staging table,
/// the refused events, and the messages that are not usage batches.
struct DecodedBatch: Sendable {
    var eventCount = 0
    var stagedRows = CopyTextWriter()
    /// Whether the rows of the staged events are in the session's staging table already
    /// (staged ahead, a chunk at a time: `UsageEventStore.stage(_:appending:on:)`), not in
    /// `stagedRows`.
    var rowsStaged = false
    /// Where each staged event's row ends in `stagedRows`, and the event as it arrived:
    /// enough to split the batch when the database refuses it (`subset`, `refusal`). Kept
    /// only by a decoder that `keepsSources`.
    var rowEnds: [Int] = []
    var stagedSources: [StagedSource] = []
    var parkedEvents: [ParkedEvent] = []
    var unreadable: [UnreadableMessage] = []
    /// The earliest event time in the batch (event-to-visible latency).
    var earliestEventTime: Date?
    /// The times of the staged events, by tenant — the earliest and the latest in each hour
    /// they touch (`TenantTimes`), as the ledger has them for the stored events: enough to find the periods
    /// they fall in (`UsagePeriodTotals` completes those before the events are stored),
    /// without keeping and sorting every event's time.
    var stagedTimes: TenantTimes {
        var times: TenantTimes = [:]
        for (key, bounds) in hourBounds { times[key.tenant, default: []].append(contentsOf: [bounds.earliest, bounds.latest]) }
        return times
    }

    struct TenantHour: Hashable {
        let tenant: UUID
        let hour: Int64
    }
    var hourBounds: [TenantHour: (earliest: Date, latest: Date)] = [:]

    /// A staged event as it arrived, to park it if the database refuses it.
    struct StagedSource: Sendable {
        let object: JSONValue
        let messageID: String?
        let acceptedAt: Date
    }

    /// The earliest acceptance among the batch's messages: the acceptance an event parked by
    /// the database statement (its tenant unknown) is kept with. No later than its own, so a
    /// replay never refuses it for age; it passed the age check when decoded.
    var earliestAcceptance: Date?

    /// The staged events `range` (with the parked events when `withParked`) as a batch of their own.
    func subset(_ range: Range<Int>, withParked: Bool) -> DecodedBatch {
        var part = DecodedBatch()
        let start = range.lowerBound == 0 ? 0 : rowEnds[range.lowerBound - 1]
        let end = range.isEmpty ? start : rowEnds[range.upperBound - 1]
        part.stagedRows = CopyTextWriter(buffer: Array(stagedRows.buffer[start..<end]))
        part.rowEnds = rowEnds[range].map { $0 - start }
        part.stagedSources = Array(stagedSources[range])
        part.eventCount = range.count
        part.parkedEvents = withParked ? parkedEvents : []
        part.earliestEventTime = earliestEventTime
        part.earliestAcceptance = earliestAcceptance
        part.hourBounds = hourBounds  // a superset: completing a period more is harmless
        return part
    }

    /// This batch with its one staged event parked instead, with the database's reason.
    func refusal(_ reason: String) -> DecodedBatch {
        var parked = DecodedBatch()
        parked.parkedEvents =
            parkedEvents
            + stagedSources.map { source in
                UsageDecoder.parked(
                    source.object, code: "database_refused", field: "", reason: "event refused by the database: \(reason)",
                    messageID: source.messageID, acceptedAt: source.acceptedAt)
            }
        return parked
    }
}

/// Turns usage messages (SPEC §3) into a `DecodedBatch`.
///
/// A message is refused whole only when it is not a usage batch (wrong schema
/// header, not JSON, not an array of 1 to 1000 items); otherwise each event is
/// validated on its own, as the ingest edge does, and a bad one is parked with the
/// field at fault while the rest of its batch goes on.
struct UsageDecoder: Sendable {
    let now: Date
    /// Whether to keep each staged event as it arrived (`DecodedBatch.stagedSources`): only
    /// when a refused message is decoded again to be split, never on the hot path.
    var keepsSources = false

    func decode(_ messages: [UsageMessage]) -> DecodedBatch {
        decode(messages, tenantHoursPerPart: .max)[0]
    }

    /// `messages` in parts, a part closed before a message once it holds
    /// `tenantHoursPerPart` (tenant, hour) pairs: each part is written in a transaction of
    /// its own, so when every message brings a thousand new tenants, a transaction's rows
    /// and the memory for them stay bounded. The parked events and the unreadable
    /// messages all go with the last part — committed last, so a retry after a part
    /// failed parks nothing twice. (`Parts` decodes a message at a time.)
    func decode(_ messages: [UsageMessage], tenantHoursPerPart: Int) -> [DecodedBatch] {
        var parts = Parts(decoder: self, tenantHoursPerPart: tenantHoursPerPart, bytes: messages.reduce(0) { $0 + $1.body.count })
        for message in messages { parts.add(message) }
        return parts.finish()
    }

    /// Messages decoded one at a time into the parts `decode(_:tenantHoursPerPart:)` makes
    /// of them all: the caller may drop each message's body once it is added, take the
    /// current part's rows as they grow (`takeRows`, to stage them) and each part as it
    /// fills (`closePart`), so a batch is never held whole in memory.
    struct Parts {
        let decoder: UsageDecoder
        let tenantHoursPerPart: Int
        /// The size the rows' buffer is reserved at when the caller takes rows as they
        /// grow; nil reserves for the whole part.
        let chunkBytes: Int?
        /// The bytes of the messages not added yet (the rows' buffer is reserved from it).
        private var remainingBytes: Int
        /// The parts closed by `add` (those `closePart` returned are the caller's).
        private var parts: [DecodedBatch] = []
        private var current = DecodedBatch()
        /// The rows of the current part taken so far (`takeRows`).
        private var rowsTaken = 0
        /// Carried to the last part (`finish`): committed last, so a retry after a part
        /// failed parks nothing twice.
        private var parked: [ParkedEvent] = []
        private var unreadable: [UnreadableMessage] = []

        /// Parts of messages whose bodies come to `bytes` in all (what the rows' buffer is
        /// reserved from, unless rows are taken `chunkBytes` at a time).
        init(decoder: UsageDecoder, tenantHoursPerPart: Int, bytes: Int = 0, chunkBytes: Int? = nil) {
            self.decoder = decoder
            self.tenantHoursPerPart = tenantHoursPerPart
            self.chunkBytes = chunkBytes
            self.remainingBytes = bytes
            self.current = part(after: nil)
        }

        /// Whether the current part holds its `tenantHoursPerPart`: the next message goes
        /// into a new one.
        var isPartFull: Bool { current.hourBounds.count >= tenantHoursPerPart }

        /// The bytes of rows in the current part not taken yet.
        var rowBytes: Int { current.stagedRows.buffer.count }

        /// Decodes `message` into the current part (closing it first when it is full);
        /// false when the message is not a usage batch (`DecodedBatch.unreadable`: to be
        /// parked whole, so its body is still needed).
        @discardableResult
        mutating func add(_ message: UsageMessage) -> Bool {
            if isPartFull { parts.append(closePart()) }
            decoder.decode(message, into: &current)
            remainingBytes -= message.body.count
            parked += current.parkedEvents
            current.parkedEvents = []
            guard current.unreadable.isEmpty else {
                unreadable += current.unreadable
                current.unreadable = []
                return false
            }
            return true
        }

        /// The current part's rows not taken yet, taken out of it (the part's events stay
        /// counted in it: `DecodedBatch.rowsStaged` is then for the caller to set).
        mutating func takeRows() -> [UInt8] {
            let rows = current.stagedRows.buffer
            current.stagedRows = CopyTextWriter(reservingCapacity: reservation(after: nil))
            rowsTaken += rows.count
            return rows
        }

        /// The current part, without the parked events and unreadable messages (those go
        /// with the last part); the next message starts a new one.
        mutating func closePart() -> DecodedBatch {
            var closed = current
            closed.stagedRows.releaseUnusedCapacity()
            current = part(after: rowsTaken + closed.stagedRows.buffer.count)
            rowsTaken = 0
            return closed
        }

        /// The parts not taken by `closePart`, the last with every parked event and unreadable message.
        consuming func finish() -> [DecodedBatch] {
            parts.append(current)
            parts[parts.count - 1].parkedEvents = parked
            parts[parts.count - 1].unreadable = unreadable
            return parts
        }

        private func part(after previous: Int?) -> DecodedBatch {
            var part = DecodedBatch()
            part.stagedRows = CopyTextWriter(reservingCapacity: reservation(after: previous))
            return part
        }

        /// The rows' buffer is reserved at the chunk's size when rows are taken as they grow
        /// (with room for one more message's: capacity not written is not resident); else
        /// at the size of what is left of the batch (8 MiB at most) for the first part, and
        /// at about the size of the previous one for the next.
        private func reservation(after previous: Int?) -> Int {
            if let chunkBytes { return chunkBytes + (256 << 10) }
            let expected = previous.map { $0 + $0 / 4 } ?? (8 << 20)
            return max(0, min(remainingBytes, expected)) + 4096
        }
    }

    fileprivate func decode(_ message: UsageMessage, into batch: inout DecodedBatch) {
        // When its events were accepted (never later than now): what their age is judged by,
        // and what a parked one keeps for its replay.
        let accepted = min(message.acceptedAt ?? now, now)
        if batch.earliestAcceptance.map({ accepted < $0 }) ?? true { batch.earliestAcceptance = accepted }
        if let schema = message.schema, schema != "usage.v1" {
            batch.unreadable.append(
                UnreadableMessage(deliveryTag: message.deliveryTag, reason: "unsupported x-tally-schema \"\(schema)\"; expected usage.v1"))
            return
        }
        let elements: [JSONParser.Element]
        do {
            elements = try JSONParser.elements(of: message.body)
        } catch {
            let reason = error.message == JSONParser.notAnArray ? "body is not a JSON array of events" : "body is not JSON: \(error)"
            batch.unreadable.append(UnreadableMessage(deliveryTag: message.deliveryTag, reason: reason))
            return
        }
        guard (1...1000).contains(elements.count) else {
            batch.unreadable.append(
                UnreadableMessage(deliveryTag: message.deliveryTag, reason: "a usage batch holds 1 to 1000 events, this one \(elements.count)"))
            return
        }
        // An event with a key sent twice (two ids, two quantities: which one counts is not
        // ours to guess) is parked as it was written; the rest of the batch goes on.
        var objects: [JSONValue] = []
        objects.reserveCapacity(elements.count)
        for element in elements {
            guard let refusal = element.refusal else {
                objects.append(element.value)
                continue
            }
            batch.parkedEvents.append(Self.parked(refused: element, refusal: refusal, messageID: message.messageID, acceptedAt: accepted))
        }
        guard !objects.isEmpty else { return }
        let validator = UsageEventValidator(authenticatedTenant: nil, now: now, acceptedAt: message.acceptedAt)
        do {
            stage(try validator.validate(objects), objects: objects, messageID: message.messageID, acceptedAt: accepted, into: &batch)
        } catch {
            // Park each refused event with its first problem; validate the rest again.
            let byIndex = Dictionary(grouping: error.problems, by: \.index)
            var valid: [JSONValue] = []
            for (index, object) in objects.enumerated() {
                guard let problem = byIndex[index]?.first else {
                    valid.append(object)
                    continue
                }
                batch.parkedEvents.append(parked(object, problem: problem, messageID: message.messageID, acceptedAt: accepted))
            }
            if let events = try? validator.validate(valid) {
                stage(events, objects: valid, messageID: message.messageID, acceptedAt: accepted, into: &batch)
            }
        }
    }

    private func stage(_ events: [UsageEvent], objects: [JSONValue], messageID: String?, acceptedAt: Date, into batch: inout DecodedBatch) {
        for (event, object) in zip(events, objects) {
            var metadata = JSONWriter(reservingCapacity: 64)
            metadata.write(.object(event.metadata))
            var time: [UInt8] = []
            time.reserveCapacity(27)
            RFC3339.write(event.time, into: &time)
            batch.stagedRows.field(event.tenantID.lowercasedText)
            batch.stagedRows.field(event.id)
            batch.stagedRows.field(event.metric)
            batch.stagedRows.field(event.name)
            batch.stagedRows.field(event.quantity.description)
            batch.stagedRows.field(event.unit)
            batch.stagedRows.field(utf8: time)
            // The UTC month (partition key): the first 7 bytes of the RFC 3339 time.
            batch.stagedRows.field(utf8: time[0..<7] + Array("-01".utf8))
            batch.stagedRows.field(utf8: metadata.bytes)
            batch.stagedRows.field(messageID)
            batch.stagedRows.endRow()
            if keepsSources {
                batch.rowEnds.append(batch.stagedRows.buffer.count)
                batch.stagedSources.append(.init(object: object, messageID: messageID, acceptedAt: acceptedAt))
            }
            batch.eventCount += 1
            let key = DecodedBatch.TenantHour(tenant: event.tenantID, hour: Int64((event.time.timeIntervalSince1970 / 3600).rounded(.down)))
            if let bounds = batch.hourBounds[key] {
                if event.time < bounds.earliest {
                    batch.hourBounds[key] = (event.time, bounds.latest)
                } else if event.time > bounds.latest {
                    batch.hourBounds[key] = (bounds.earliest, event.time)
                }
            } else {
                batch.hourBounds[key] = (event.time, event.time)
            }
            if batch.earliestEventTime.map({ event.time < $0 }) ?? true { batch.earliestEventTime = event.time }
        }
    }

    private func parked(_ object: JSONValue, problem: UsageEventProblem, messageID: String?, acceptedAt: Date) -> ParkedEvent {
        // "events[3].quantity" → "quantity": the field within the event.
        let field = problem.field.split(separator: ".", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        return Self.parked(
            object, code: problem.code, field: field, reason: "\(field.isEmpty ? "event" : field) \(problem.message)", messageID: messageID,
            acceptedAt: acceptedAt)
    }

    /// An element the parser refused: a key sent twice (its payload as written, valid UTF-8
    /// without NUL as the parser read it; the field the key's path in the event,
    /// `metadata.region` for a nested one), or not JSON inside (its text kept with any byte
    /// that is not UTF-8 replaced, and NUL escaped as COPY needs).
    static func parked(refused element: JSONParser.Element, refusal: JSONParseError, messageID: String?, acceptedAt: Date) -> ParkedEvent {
        let duplicate = refusal.duplicateKey != nil
        let text = String(decoding: element.text, as: UTF8.self)
        // Not JSON inside: its id and tenant as far as they read, for `dlq list`.
        let labels = duplicate ? element.value : .object(JSONParser.strings(["id", "tenant_id"], inObject: element.text).mapValues { .string($0) })
        return parked(
            labels, code: duplicate ? "duplicate_key" : "invalid_json", field: refusal.field,
            reason: duplicate ? refusal.message : "is not valid JSON: \(refusal.message)", messageID: messageID, acceptedAt: acceptedAt,
            payload: duplicate ? text : text.replacingOccurrences(of: "\u{0}", with: "\\u0000"))
    }

    /// An event to park: its payload as JSON (NUL escaped, as JSON escapes it), the
    /// labels cut to 255 code points with NUL written as `\u0000` — COPY text cannot
    /// carry a NUL byte, and one must not fail the batch that parks it. `payload`, when
    /// given, is the event as written instead (valid UTF-8 without NUL, as parsed).
    static func parked(
        _ object: JSONValue, code: String, field: String, reason: String, messageID: String?, acceptedAt: Date, payload text: String? = nil
    ) -> ParkedEvent {
        var payload = JSONWriter()
        if text == nil { payload.write(object) }
        var tenant: String?
        var id: String?
        if case .object(let fields) = object {
            tenant = fields["tenant_id"]?.scalarText
            id = fields["id"]?.scalarText
        }
        func label(_ text: String) -> String {
            String(String.UnicodeScalarView(text.unicodeScalars.prefix(255))).replacingOccurrences(of: "\u{0}", with: "\\u0000")
        }
        return ParkedEvent(
            tenantID: tenant.map(label), eventID: id.map(label), code: code, field: field,
            reason: reason.replacingOccurrences(of: "\u{0}", with: "\\u0000"),
            payload: text ?? String(decoding: payload.bytes, as: UTF8.self), messageID: messageID.map(label), acceptedAt: acceptedAt)
    }
}
