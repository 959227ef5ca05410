import Foundation
import Metering
import TallyTestSupport
import Testing
import UsageEvents

/// The quota-state broadcast is written by hand (`QuotaState.encoded()` and `encoded(_:)`);
/// Foundation's encoder over the type's `Codable` conformance — what readers decode with —
/// is the reference it must agree with.
@Suite("Quota state wire form")
struct QuotaStateWireTests {
    static let names = ["api_calls", "estimates", #"quote"d"#, "back\\slash", "tab\there", "é-ünïcode", "ctl\u{1}x", ""]

    static func randomState(_ random: inout SeededRandom) -> QuotaState {
        func decimal(_ random: inout SeededRandom) -> Quantity {
            // Ten-thousandths: 0 to 2e8 units, with a run of small values (quantities are never negative).
            let scaled = Int64(random.next() % 2_000_000_000_000) - (random.next() % 8 == 0 ? 1_000_000 : 0)
            return Quantity(scaled: Int128(max(0, scaled)))
        }
        func date(_ random: inout SeededRandom) -> Date {
            let micros = Int64(random.next() % 4_000_000_000_000_000)  // 1970 … 2096, microseconds
            return Date(timeIntervalSince1970: Double(micros) / 1_000_000)
        }
        var metrics: [String: QuotaState.Metric] = [:]
        for _ in 0..<Int(random.next() % 4) {
            let name = names[Int(random.next() % UInt64(names.count))]
            metrics[name] = QuotaState.Metric(
                used: decimal(&random), quota: random.next() % 3 == 0 ? nil : decimal(&random),
                enforcement: random.next() % 2 == 0 ? .hard : .soft,
                events: random.next() % 3 == 0 ? nil : Int64(random.next() % 1_000_000_000_000))
        }
        let bounded = random.next() % 4 != 0
        return QuotaState(
            tenantID: UUID(), asOf: date(&random), periodStart: bounded ? date(&random) : nil, periodEnd: bounded ? date(&random) : nil,
            subscription: [.active, .trialing, .none][Int(random.next() % 3)], metrics: metrics)
    }

    /// The reference: one state as Foundation's encoder writes it (sorted keys, instants as
    /// RFC 3339 strings).
    static func foundationJSON(_ state: QuotaState) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.format(date))
        }
        return Array(try encoder.encode(state))
    }

    /// A JSON document as Foundation reads it, with the tenant id in lower case (the
    /// reference writes it in upper case; readers take either).
    static func tree(_ bytes: [UInt8]) throws -> NSDictionary {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        var normalized = object
        normalized["tenant_id"] = (object["tenant_id"] as? String)?.lowercased()
        return normalized as NSDictionary
    }

    @Test("random states: the written array reads back equal, and each element is the JSON Foundation's encoder writes")
    func agreesWithFoundation() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SeededRandom(seed: seed)
        for round in 0..<200 {
            let states = (0..<Int(random.next() % 6)).map { _ in Self.randomState(&random) }
            let written = QuotaState.encoded(states)
            #expect(try QuotaState.decodeAll(written) == states, "seed \(seed), round \(round)")
            let elements = try #require(try JSONSerialization.jsonObject(with: Data(written)) as? [Any])
            #expect(elements.count == states.count)
            for (element, state) in zip(elements, states) {
                let mine = try Self.tree(Array(try JSONSerialization.data(withJSONObject: element)))
                let reference = try Self.tree(try Self.foundationJSON(state))
                #expect(mine == reference, "seed \(seed), round \(round): \(String(decoding: written, as: UTF8.self))")
                #expect(try Self.tree(state.encoded()) == reference, "seed \(seed), round \(round): one state alone")
                #expect(try QuotaState.decode(state.encoded()) == state)
            }
        }
    }

    @Test("an event count that is not a whole number of at least 0 is refused, naming the metric")
    func badEvents() throws {
        for events in ["-1", "1.5", "\"3\""] {
            let body =
                #"{"as_of": "2026-11-24T18:40:00Z", "subscription": "active", "tenant_id": "\#(UUID())", "metrics": {"api_calls": {"enforcement": "hard", "used": 1, "events": \#(events)}}}"#
            #expect(throws: QuotaState.DecodingProblem.self, "events \(events)") { try QuotaState.decode(Array(body.utf8)) }
            do {
                _ = try QuotaState.decode(Array(body.utf8))
            } catch let problem as QuotaState.DecodingProblem {
                #expect(problem.description.contains("metrics.api_calls.events"), "\(problem)")
            }
        }
    }

    @Test("no states is an empty array; one state reads back whole")
    func edges() throws {
        #expect(QuotaState.encoded([]) == Array("[]".utf8))
        var random = SeededRandom(seed: 7)
        let state = Self.randomState(&random)
        #expect(try QuotaState.decodeAll(QuotaState.encoded([state])) == [state])
    }
}
