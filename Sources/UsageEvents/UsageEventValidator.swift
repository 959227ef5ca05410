import CivilTime
import Foundation

/// One thing wrong with one event of a request: which event (`index`), which field
/// (a JSON path such as `events[3].quantity`), and what to do about it.
public struct UsageEventProblem: Sendable, Hashable, Codable, Error {
    public let index: Int
    public let field: String
    public let code: String
    public let message: String

    public init(index: Int, field: String, code: String, message: String) {
        self.index = index
        self.field = field
        self.code = code
        self.message = message
    }
}

/// Turns untrusted JSON objects into `UsageEvent`s by every rule of SPEC §3,
/// reporting every problem of every event (not just the first) so a client can fix
/// a whole batch at once.
///
/// `now` is a parameter: the accepted time window is [now − 90 days, now + 5 minutes].
/// A worker passes `acceptedAt`, when the events were accepted (their message's
/// timestamp): the 90 days count back from it, so time spent queued does not refuse
/// what the edge accepted — within `workerMargin`, the dedup window's margin.
public struct UsageEventValidator: Sendable {
    /// The tenant of the API key, when a tenant key made the request: events may
    /// omit `tenant_id`, and must not name another tenant.
    public let authenticatedTenant: UUID?
    public let now: Date
    public let acceptedAt: Date?

    public static let maxIDLength = 255
    public static let maxTextLength = 200
    public static let maxMetadataBytes = 8 * 1024
    public static let futureTolerance: TimeInterval = 5 * 60
    public static let maxAge: TimeInterval = 90 * 86_400
    /// How long after its acceptance a worker still counts an event near the age limit:
    /// ids are kept, and months archived, 97 days after (TallyStore's `dedupWindowDays`),
    /// so an older event could no longer be told from a duplicate.
    public static let workerMargin: TimeInterval = 7 * 86_400
    static let knownFields: Set<String> = Set(UsageEvent.CodingKeys.allCases.map(\.stringValue))

    public init(authenticatedTenant: UUID?, now: Date, acceptedAt: Date? = nil) {
        self.authenticatedTenant = authenticatedTenant
        self.now = now
        self.acceptedAt = acceptedAt.map { min($0, now) }
    }

    /// Validates every object; returns the events, or throws every problem found.
    public func validate(_ objects: [JSONValue], path: String = "events") throws(UsageEventProblems) -> [UsageEvent] {
        var events: [UsageEvent] = []
        var problems: [UsageEventProblem] = []
        for (index, object) in objects.enumerated() {
            var check = EventCheck(index: index, path: path)
            if let event = self.event(from: object, check: &check) { events.append(event) }
            problems += check.problems
        }
        guard problems.isEmpty else { throw UsageEventProblems(problems: problems) }
        return events
    }

    private func event(from value: JSONValue, check: inout EventCheck) -> UsageEvent? {
        guard case .object(let fields) = value else {
            check.fail("", "not_an_object", "each event must be a JSON object")
            return nil
        }
        // Sorted only when something is wrong: this runs for every event ingested.
        let unknown = fields.keys.filter { !Self.knownFields.contains($0) }
        for key in unknown.sorted() {
            check.fail(key, "unknown_field", "is not a usage event field (id, tenant_id, type, name, quantity, unit, time, metadata)")
        }
        let id = check.id(fields["id"])
        let tenant = check.tenant(fields["tenant_id"], authenticated: authenticatedTenant)
        let metric = check.metric(fields["type"])
        let quantity = check.quantity(fields["quantity"])
        let time = check.time(fields["time"], now: now, acceptedAt: acceptedAt)
        let name = check.optionalText(fields["name"], field: "name")
        let unit = check.optionalText(fields["unit"], field: "unit")
        let metadata = check.metadata(fields["metadata"])
        guard check.problems.isEmpty, let id, let tenant, let metric, let quantity, let time else { return nil }
        return UsageEvent(
            id: id, tenantID: tenant, metric: metric, name: name, quantity: quantity, unit: unit, time: time,
            metadata: metadata ?? [:])
    }
}

/// Every problem of a refused request.
public struct UsageEventProblems: Error, Sendable, Equatable {
    public let problems: [UsageEventProblem]
}

/// The checks of one event, collecting problems as they are found.
struct EventCheck {
    let index: Int
    /// The array's path, e.g. `events`; `events[3].quantity` is built only for a problem.
    let path: String
    var problems: [UsageEventProblem] = []

    mutating func fail(_ field: String, _ code: String, _ message: String) {
        let prefix = "\(self.path)[\(index)]"
        let path = field.isEmpty ? prefix : "\(prefix).\(field)"
        problems.append(UsageEventProblem(index: index, field: path, code: code, message: message))
    }

    mutating func id(_ value: JSONValue?) -> String? {
        guard case .string(let id)? = value else {
            fail(
                "id", value == nil ? "missing" : "invalid_type",
                "is required: a string of 1 to 255 printable characters, set once where the usage happened")
            return nil
        }
        // Visible ASCII is the common case; other scalars need the Unicode tables. Invisible
        // format characters (U+200B, U+FEFF, U+00AD, bidi marks, tags) are refused with the
        // spaces: "x" and "x\u{200B}" look alike and counted as two events.
        let printable =
            id.utf8.allSatisfy { (0x21...0x7E).contains($0) }
            || id.unicodeScalars.allSatisfy {
                !$0.properties.isWhitespace && !$0.properties.isDefaultIgnorableCodePoint
                    && ![.control, .format, .unassigned].contains($0.properties.generalCategory)
            }
        // Counted in code points, as PostgreSQL's length() counts them (a letter with 300
        // combining marks is one Character but 301 code points).
        guard (1...UsageEventValidator.maxIDLength).contains(id.unicodeScalars.count), printable else {
            fail("id", "invalid", "must be 1 to 255 printable characters (no control, invisible or space characters)")
            return nil
        }
        return id
    }

    mutating func tenant(_ value: JSONValue?, authenticated: UUID?) -> UUID? {
        guard let value else {
            if let authenticated { return authenticated }
            fail("tenant_id", "missing", "is required when sending with the admin token")
            return nil
        }
        guard case .string(let text) = value, let tenant = UUID(text: text) else {
            fail("tenant_id", "invalid", "must be a tenant id (UUID)")
            return nil
        }
        if let authenticated, authenticated != tenant {
            fail("tenant_id", "foreign_tenant", "names another tenant; a tenant API key may only send its own usage")
            return nil
        }
        return tenant
    }

    mutating func metric(_ value: JSONValue?) -> String? {
        guard case .string(let metric)? = value else {
            fail("type", value == nil ? "missing" : "invalid_type", "is required: the metric, e.g. \"api_calls\"")
            return nil
        }
        guard MetricName.isValid(metric) else {
            fail("type", "invalid", MetricName.rule)
            return nil
        }
        return metric
    }

    /// SPEC §3's quantity, parsed exactly from its text: a JSON number, or a plain
    /// decimal string (`"12.5"`; no exponent, no leading `.`).
    mutating func quantity(_ value: JSONValue?) -> Quantity? {
        let text: String
        switch value {
        case .number(let number)?: text = number.text
        case .string(let string)? where DecimalText.isPlain(string): text = string
        case nil:
            fail("quantity", "missing", "is required: a number or decimal string, 0 to 1e12, at most 4 decimals")
            return nil
        default:
            fail("quantity", "invalid", "must be a number or a decimal string such as \"12.5\"")
            return nil
        }
        do {
            return try Quantity(parsing: text)
        } catch {
            switch error {
            case .negative, .tooLarge, .totalTooLarge: fail("quantity", "out_of_range", "must be between 0 and 1e12")
            case .tooManyFractionDigits: fail("quantity", "too_precise", "has more than 4 decimal places")
            case .notANumber: fail("quantity", "invalid", "must be a number or a decimal string such as \"12.5\"")
            }
            return nil
        }
    }

    mutating func time(_ value: JSONValue?, now: Date, acceptedAt: Date?) -> Date? {
        guard case .string(let text)? = value else {
            fail("time", value == nil ? "missing" : "invalid_type", "is required: when the usage happened, RFC 3339 (2026-11-24T18:40:00.123Z)")
            return nil
        }
        guard let time = RFC3339.parse(text) else {
            fail("time", "invalid", "must be RFC 3339, e.g. 2026-11-24T18:40:00.123Z")
            return nil
        }
        guard time <= now.addingTimeInterval(UsageEventValidator.futureTolerance) else {
            fail("time", "in_future", "is more than 5 minutes in the future; check the sender's clock")
            return nil
        }
        guard time >= (acceptedAt ?? now).addingTimeInterval(-UsageEventValidator.maxAge) else {
            fail("time", "too_old", acceptedAt == nil ? "is more than 90 days old" : "was more than 90 days old when accepted")
            return nil
        }
        guard time >= now.addingTimeInterval(-UsageEventValidator.maxAge - UsageEventValidator.workerMargin) else {
            fail(
                "time", "too_old",
                "is more than 97 days old: accepted in time, but it waited more than 7 days to be counted, past the dedup window")
            return nil
        }
        return time
    }

    mutating func optionalText(_ value: JSONValue?, field: String) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)? where text.utf8.contains(0):
            fail(field, "invalid", "must not contain NUL characters")
        case .string(let text)? where text.unicodeScalars.count <= UsageEventValidator.maxTextLength: return text
        case .string?:
            fail(field, "too_long", "must be at most \(UsageEventValidator.maxTextLength) characters")
        default:
            fail(field, "invalid_type", "must be a string")
        }
        return nil
    }

    mutating func metadata(_ value: JSONValue?) -> [String: JSONValue]? {
        switch value {
        case nil, .null?: return nil
        case .object(let fields)?:
            let encoded = (try? JSONEncoder().encode(fields)) ?? Data(count: Int.max >> 32)
            guard encoded.count <= UsageEventValidator.maxMetadataBytes else {
                fail("metadata", "too_large", "must be at most 8 KiB of JSON")
                return nil
            }
            // PostgreSQL's jsonb cannot hold U+0000; refuse it here rather than fail a whole batch later.
            guard encoded.range(of: Data(#"\u0000"#.utf8)) == nil else {
                fail("metadata", "invalid", "must not contain NUL characters")
                return nil
            }
            return fields
        default:
            fail("metadata", "invalid_type", "must be a JSON object")
            return nil
        }
    }
}

/// The decimal strings a quantity may be written as.
enum DecimalText {
    /// A plain decimal (`12`, `-3`, `12.5`; `.5`, `1.`, exponents and other signs are
    /// not), at most 20 digits before the point.
    static func isPlain(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var index = bytes.first == UInt8(ascii: "-") ? 1 : 0
        var digitsBefore = 0
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            digitsBefore += 1
            index += 1
        }
        guard digitsBefore > 0, digitsBefore <= 20 else { return false }
        if index < bytes.count {
            guard bytes[index] == UInt8(ascii: "."), index + 1 < bytes.count else { return false }
            index += 1
            while index < bytes.count {
                guard bytes[index] >= 0x30, bytes[index] <= 0x39 else { return false }
                index += 1
            }
        }
        return true
    }
}
