import Foundation
import TallyTestSupport
import Testing
import UsageEvents

@Suite("Usage event validation (SPEC §3)")
struct UsageEventValidatorTests {
    let tenant = UUID(uuidString: "3F0C1E6A-7B1B-4C55-9E0F-5D8C2A1B4E77")!
    let now = RFC3339.parse("2026-11-24T18:40:00Z")!

    func object(_ json: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
    }

    func validEvent(_ overrides: String = "") -> String {
        let base = #""id": "evt_01", "type": "api_calls", "quantity": "1", "time": "2026-11-24T18:39:00.123Z""#
        return "{\(base)\(overrides.isEmpty ? "" : ", " + overrides)}"
    }

    @Test("a valid event keeps every field exactly")
    func valid() throws {
        let json =
            #"{"id": "evt_01J", "tenant_id": "3f0c1e6a-7b1b-4c55-9e0f-5d8c2a1b4e77", "type": "api_calls", "name": "GET /estimates", "quantity": 1000.5, "unit": "api_call", "time": "2026-11-24T18:40:00.123Z", "metadata": {"endpoint": "/estimates", "n": 0.1}}"#
        let events = try UsageEventValidator(authenticatedTenant: nil, now: now).validate([object(json)])
        let event = try #require(events.first)
        #expect(event.id == "evt_01J")
        #expect(event.tenantID == tenant)
        #expect(event.metric == "api_calls")
        #expect(event.quantity == (try Quantity(parsing: "1000.5")))
        #expect(RFC3339.format(event.time) == "2026-11-24T18:40:00.123000Z")
        #expect(event.metadata["n"] == .number(Decimal(string: "0.1")!))
    }

    @Test("a tenant key may omit tenant_id; its own id is accepted; another's is refused")
    func tenantRules() throws {
        let validator = UsageEventValidator(authenticatedTenant: tenant, now: now)
        #expect(try validator.validate([object(validEvent())]).first?.tenantID == tenant)
        #expect(try validator.validate([object(validEvent(#""tenant_id": "\#(tenant.uuidString)""#))]).count == 1)
        let foreign = #expect(throws: UsageEventProblems.self) {
            try validator.validate([object(validEvent(#""tenant_id": "\#(UUID().uuidString)""#))])
        }
        #expect(foreign?.problems.map(\.code) == ["foreign_tenant"])
        let admin = #expect(throws: UsageEventProblems.self) {
            try UsageEventValidator(authenticatedTenant: nil, now: now).validate([object(validEvent())])
        }
        #expect(admin?.problems.first?.field == "events[0].tenant_id")
    }

    /// The quantity goes from the event's text to `Quantity` exactly, however the number
    /// is written: 2,000 random quantities as plain numbers, with trailing zeros, with an
    /// exponent (with leading zeros too, as JSON allows), and as decimal strings.
    @Test("random quantities, written five ways, become exactly their Quantity")
    func quantitiesExactly() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SeededRandom(seed: seed)
        let validator = UsageEventValidator(authenticatedTenant: tenant, now: now)
        for _ in 0..<2_000 {
            let scaled = Int128(random.next() % 10_000_000_000_000_001)  // up to 1e12 in ten-thousandths
            let expected = Quantity(scaled: scaled)
            let plain = expected.description
            let digits = String(scaled)
            for written in [plain, plain.contains(".") ? plain + "00" : plain + ".000", "\(digits)e-4", "\(digits)E-00004", #""\#(plain)""#] {
                let json = validEvent().replacingOccurrences(of: #""quantity": "1""#, with: #""quantity": \#(written)"#)
                let event = try #require(try validator.validate([object(json)]).first)
                #expect(event.quantity == expected, "seed \(seed): \(written)")
            }
        }
    }

    /// Each malformed event names its field and a stable code.
    @Test(arguments: [
        (#""quantity": -1"#, "events[0].quantity", "out_of_range"),
        (#""quantity": "1.00001""#, "events[0].quantity", "too_precise"),
        (#""quantity": 1.00001"#, "events[0].quantity", "too_precise"),
        (#""quantity": 1000000000000.0001"#, "events[0].quantity", "out_of_range"),
        (#""quantity": 1000000000000.00001"#, "events[0].quantity", "out_of_range"),
        (#""quantity": 2e12"#, "events[0].quantity", "out_of_range"),
        (#""quantity": "-0.00001""#, "events[0].quantity", "out_of_range"),
        (#""quantity": 1e-5"#, "events[0].quantity", "too_precise"),
        (#""quantity": ".5""#, "events[0].quantity", "invalid"),
        (#""quantity": "NaN""#, "events[0].quantity", "invalid"),
        (#""quantity": "1e3""#, "events[0].quantity", "invalid"),
        (#""quantity": true"#, "events[0].quantity", "invalid"),
        (#""time": "2026-11-24T18:46:00Z""#, "events[0].time", "in_future"),
        (#""time": "2026-08-25T18:39:00Z""#, "events[0].time", "too_old"),
        (#""time": "2026-02-30T00:00:00Z""#, "events[0].time", "invalid"),
        (#""time": "yesterday""#, "events[0].time", "invalid"),
        (#""type": "API-calls""#, "events[0].type", "invalid"),
        (#""type": 7"#, "events[0].type", "invalid_type"),
        (#""id": """#, "events[0].id", "invalid"),
        (#""id": "has space""#, "events[0].id", "invalid"),
        // Invisible characters: "x" and these looked alike and counted as separate events.
        (#""id": "x\u200b""#, "events[0].id", "invalid"),
        (#""id": "\ufeffx""#, "events[0].id", "invalid"),
        (#""id": "x\u00ad""#, "events[0].id", "invalid"),
        (#""id": "x\u200e""#, "events[0].id", "invalid"),
        // Default-ignorable letters and marks: a grapheme joiner, a Hangul filler, a variation selector.
        (#""id": "x\u034f""#, "events[0].id", "invalid"),
        (#""id": "\u3164""#, "events[0].id", "invalid"),
        (#""id": "x\ufe0f""#, "events[0].id", "invalid"),
        (#""metadata": [1]"#, "events[0].metadata", "invalid_type"),
        (#""name": 5"#, "events[0].name", "invalid_type"),
        (#""quantiy": 1"#, "events[0].quantiy", "unknown_field"),
        (#""name": "a\u0000b""#, "events[0].name", "invalid"),
        (#""metadata": {"k": ["x\u0000"]}"#, "events[0].metadata", "invalid"),
    ])
    func malformed(_ override: String, _ field: String, _ code: String) throws {
        let validator = UsageEventValidator(authenticatedTenant: tenant, now: now)
        guard case .object(var base) = try object(validEvent()),
            case .object(let extra) = try object("{\(override)}")
        else {
            Issue.record("test fixtures must be objects")
            return
        }
        base.merge(extra) { _, new in new }
        let fields = JSONValue.object(base)
        let error = #expect(throws: UsageEventProblems.self) { try validator.validate([fields]) }
        #expect(error?.problems.map(\.field) == [field])
        #expect(error?.problems.map(\.code) == [code])
    }

    @Test("every problem of every event is reported, with its index")
    func allProblems() throws {
        let validator = UsageEventValidator(authenticatedTenant: tenant, now: now)
        let batch = [
            try object(validEvent()),
            try object(#"{"id": "x", "quantity": -2, "time": "bad"}"#),
            .string("not an object"),
        ]
        let error = #expect(throws: UsageEventProblems.self) { try validator.validate(batch) }
        let problems = try #require(error?.problems)
        #expect(Set(problems.map(\.index)) == [1, 2])
        #expect(problems.map(\.field).contains("events[1].type"))
        #expect(problems.map(\.field).contains("events[1].quantity"))
        #expect(problems.map(\.field).contains("events[1].time"))
        #expect(problems.map(\.field).contains("events[2]"))
    }

    @Test("metadata over 8 KiB is refused, at 8 KiB accepted")
    func metadataSize() throws {
        let validator = UsageEventValidator(authenticatedTenant: tenant, now: now)
        let small = String(repeating: "a", count: 8 * 1024 - 10)
        #expect(try validator.validate([object(validEvent(#""metadata": {"k": "\#(small)"}"#))]).count == 1)
        let large = String(repeating: "a", count: 8 * 1024)
        #expect(throws: UsageEventProblems.self) {
            try validator.validate([object(validEvent(#""metadata": {"k": "\#(large)"}"#))])
        }
    }

    @Test("events survive an encode/decode round trip exactly")
    func roundTrip() throws {
        let event = UsageEvent(
            id: "evt_ü", tenantID: tenant, metric: "documents", name: "PDF", quantity: try Quantity(parsing: "123456789012.3456"),
            unit: "doc", time: RFC3339.parse("2026-11-24T18:40:00.123456+01:00")!,
            metadata: ["nested": .object(["list": .array([.number(1), .null, .bool(true)])])])
        let data = try JSONEncoder().encode([event])
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""quantity":"123456789012.3456""#))
        #expect(text.contains(#""time":"2026-11-24T17:40:00.123456Z""#))
        #expect(try JSONDecoder().decode([UsageEvent].self, from: data) == [event])
    }

    @Test("RFC 3339 parsing accepts offsets and fractions, refuses impossible dates")
    func rfc3339() {
        #expect(RFC3339.parse("2028-02-29T23:59:59.999999Z") != nil)
        #expect(RFC3339.parse("2027-02-29T00:00:00Z") == nil)
        #expect(RFC3339.parse("2026-11-24T18:40:00") == nil)
        #expect(RFC3339.parse("2026-11-24 18:40:00Z") == nil)
        #expect(RFC3339.parse("2026-11-24T18:40:00.Z") == nil)
        #expect(RFC3339.parse("2026-11-24t18:40:00-05:00") == RFC3339.parse("2026-11-24T23:40:00Z"))
        #expect(RFC3339.format(RFC3339.parse("1969-12-31T23:59:59.5Z")!) == "1969-12-31T23:59:59.500000Z")
    }
}

@Suite("Event ids")
struct EventIDTests {
    @Test("UUIDv7: version and variant bits set, time-ordered, unique")
    func uuidV7() throws {
        var ids: [String] = []
        for millisecond in stride(from: UInt64(1_795_000_000_000), to: 1_795_000_001_000, by: 7) {
            var generator = SystemRandomNumberGenerator()
            ids.append(EventID.make(millisecondsSinceEpoch: millisecond, using: &generator))
        }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        for id in ids {
            let uuid = try #require(UUID(uuidString: id))
            #expect(uuid.uuidString.lowercased() == id)
            #expect(Array(id)[14] == "7")
            #expect("89ab".contains(Array(id)[19]))
        }
        #expect(EventID.make().count == 36)
    }
}
