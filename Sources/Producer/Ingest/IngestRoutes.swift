import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metering
import NIOCore
import TallyHTTP
import TallyStore
import UsageEvents

/// `POST /v1/events` (SPEC §4): validates every event, refuses the whole request
/// if any is invalid (listing every offending index and field), and answers 202
/// only once the events are durable (broker confirm or fsynced spool).
struct IngestRoutes: Sendable {
    let publisher: DurablePublisher
    let tenants: KnownTenants
    let clock: @Sendable () -> Date

    func register(on router: Router<IngestRequestContext>) {
        router.post("v1/events", use: ingest)
    }

    @Sendable func ingest(_ request: Request, context: IngestRequestContext) async throws -> EditedResponse<Accepted> {
        let principal = try context.requirePrincipal()
        guard let body = try await Self.collect(request.body, context: context) else {
            var error = APIError.tooLarge(limit: IngestRequestContext.bodyLimit)
            error.headers[.connection] = "close"
            throw error
        }
        let objects: [JSONValue]
        do {
            objects = try IngestBody.parse(Data(body.readableBytesView), contentType: request.headers[.contentType])
        } catch  where error == .tooManyEvents {
            throw APIError(.contentTooLarge, code: "TOO_MANY_EVENTS", message: "The body \(error.message).", field: error.field)
        } catch {
            throw APIError.invalid(error.field, error.message)
        }
        let tenant: UUID?
        switch principal {
        case .tenant(let id): tenant = id
        case .admin: tenant = nil
        }
        // The time the events are judged against is the one their messages carry: a worker
        // judges the age limit against it, not against when it gets to them.
        let acceptedAt = clock()
        let events = try await validate(objects, tenant: tenant, now: acceptedAt)
        let traceparent = request.headers[HTTPField.Name("traceparent")!]
        let batches = UsageBatch.batches(of: events, traceparent: traceparent, acceptedAt: acceptedAt)
        let durability: DurablePublisher.Durability
        do {
            durability = try await publisher.submit(batches)
        } catch MeteringError.backPressure {
            var error = APIError(
                .serviceUnavailable, code: "BACK_PRESSURE",
                message: "RabbitMQ is unavailable and the spool is full; nothing was accepted, retry with backoff")
            error.headers[.retryAfter] = "5"
            throw error
        } catch let failure as MeteringError {
            // Shutting down, or the spool cannot be written: nothing was accepted, and
            // another instance (or this one, later) can take the events.
            var error = APIError(
                .serviceUnavailable, code: "UNAVAILABLE",
                message: failure == .shuttingDown
                    ? "This ingest instance is shutting down; nothing was accepted, retry (another instance will answer)"
                    : "Events cannot be made durable right now; nothing was accepted, retry with backoff")
            error.headers[.retryAfter] = "5"
            context.logger.error("usage refused", metadata: ["error": "\(failure)"])
            throw error
        }
        context.logger.info(
            "usage accepted",
            metadata: ["usage.events": "\(events.count)", "usage.durability": "\(durability)"])
        return EditedResponse(
            status: .accepted,
            response: Accepted(accepted: events.count, durability: durability == .confirmed ? "confirmed" : "spooled"))
    }

    /// The body, or nil when it is over the limit. An oversized body is still read and
    /// discarded up to `drainLimit`, so a client that writes its whole body before
    /// reading (Python's urllib with `Connection: close`) receives the 413 instead of
    /// blocking until its own timeout; beyond that the connection is closed.
    static func collect(_ body: RequestBody, context: IngestRequestContext) async throws -> ByteBuffer? {
        var collected = ByteBuffer()
        var received = 0
        for try await chunk in body {
            received += chunk.readableBytes
            if received <= IngestRequestContext.bodyLimit {
                var chunk = chunk
                collected.writeBuffer(&chunk)
            } else if received > IngestRequestContext.drainLimit {
                context.channel.close(promise: nil)
                return nil
            }
        }
        return received <= IngestRequestContext.bodyLimit ? collected : nil
    }

    private func validate(_ objects: [JSONValue], tenant: UUID?, now: Date) async throws -> [UsageEvent] {
        let validator = UsageEventValidator(authenticatedTenant: tenant, now: now)
        var events: [UsageEvent]
        do {
            events = try validator.validate(objects)
        } catch {
            throw refusal(error.problems, total: objects.count)
        }
        if tenant == nil {
            let unknown = try await tenants.unknown(among: Set(events.map(\.tenantID)))
            let problems = events.enumerated().filter { unknown.contains($0.element.tenantID) }.map {
                UsageEventProblem(index: $0.offset, field: "events[\($0.offset)].tenant_id", code: "unknown_tenant", message: "names no tenant")
            }
            if !problems.isEmpty { throw refusal(problems, total: objects.count) }
        }
        if events.count > 1 {
            let conflicts = Self.conflictingRepeats(events)
            if !conflicts.isEmpty { throw refusal(conflicts, total: objects.count) }
        }
        return events
    }

    /// Events repeating an earlier event's id (of the same tenant) with other contents. Only
    /// one of them could be counted, and which one depended on how the batch was sorted;
    /// a repeat with the same contents is a harmless resend, counted once.
    static func conflictingRepeats(_ events: [UsageEvent]) -> [UsageEventProblem] {
        // The id as bytes, as PostgreSQL's unique key compares it: a String compares by
        // canonical equivalence, so "café" composed and decomposed were one id here (a
        // false conflict) and two in the database (both counted).
        struct Key: Hashable {
            let tenant: UUID
            let id: [UInt8]
        }
        var first: [Key: Int] = [:]
        first.reserveCapacity(events.count)
        var problems: [UsageEventProblem] = []
        for (index, event) in events.enumerated() {
            let key = Key(tenant: event.tenantID, id: Array(event.id.utf8))
            guard let earlier = first[key] else {
                first[key] = index
                continue
            }
            if events[earlier] != event {
                problems.append(
                    UsageEventProblem(
                        index: index, field: "events[\(index)].id", code: "conflicting_id",
                        message:
                            "repeats the id of events[\(earlier)] with other contents; the id is the event's idempotency key: give each event its own"
                    ))
            }
        }
        return problems
    }

    /// The most problems one refusal lists; the message counts them all.
    static let maximumListedProblems = 100

    /// 403 when an event names another tenant than the key's (SPEC §6), else 400.
    /// Lists the first `maximumListedProblems` problems and says how many there are.
    private func refusal(_ problems: [UsageEventProblem], total: Int) -> APIError {
        let invalid = Set(problems.map(\.index)).count
        let foreign = problems.contains { $0.code == "foreign_tenant" }
        let listed =
            problems.count <= Self.maximumListedProblems
            ? "Fix every listed field and resend."
            : "The first \(Self.maximumListedProblems) of \(problems.count) problems are listed; fix them all and resend."
        return APIError(
            foreign ? .forbidden : .badRequest, code: foreign ? "FOREIGN_TENANT" : "INVALID_EVENTS",
            message: "\(invalid) of \(total) events are invalid; nothing was accepted. \(listed)",
            field: problems.first?.field,
            details: problems.prefix(Self.maximumListedProblems).map { FieldProblem(field: $0.field, message: "\($0.code): \($0.message)") })
    }
}

struct Accepted: ResponseEncodable {
    let accepted: Int
    let durability: String
}
