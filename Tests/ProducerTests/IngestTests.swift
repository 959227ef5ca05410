import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

@testable import Producer

/// `POST /v1/events` against the real PostgreSQL and RabbitMQ.
@Suite("Ingest service")
struct IngestTests {
    let now = TestClock.now()

    func headers(_ token: String?, contentType: String = "application/json") -> HTTPFields {
        var fields: HTTPFields = [.contentType: contentType]
        if let token { fields[.authorization] = "Bearer \(token)" }
        return fields
    }

    /// One event as JSON text; `extra` (`"key": value, …`) adds or replaces fields.
    func event(_ id: String, quantity: String = #""1""#, tenant: UUID? = nil, extra: String = "") -> String {
        var fields: [(String, String)] = [
            ("id", #""\#(id)""#), ("type", #""api_calls""#), ("quantity", quantity),
            ("time", #""\#(RFC3339.format(now.addingTimeInterval(-60)))""#),
        ]
        if let tenant { fields.append(("tenant_id", #""\#(tenant.uuidString.lowercased())""#)) }
        if !extra.isEmpty, let data = "{\(extra.drop(while: { $0 == "," || $0 == " " }))}".data(using: .utf8),
            let overrides = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            for (key, value) in overrides {
                let encoded = String(decoding: try! JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]), as: UTF8.self)
                fields.removeAll { $0.0 == key }
                fields.append((key, encoded))
            }
        }
        return "{" + fields.map { #""\#($0.0)": \#($0.1)"# }.joined(separator: ", ") + "}"
    }

    @Test("one event, an array and NDJSON are each accepted with 202 and reach the queue exactly once")
    func acceptedForms() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            let bodies: [(String, String)] = [
                (event("single-1"), "application/json"),
                ("[\(event("array-1")), \(event("array-2"))]", "application/json"),
                ("\(event("nd-1"))\n\(event("nd-2"))\n\(event("nd-3"))\n", "application/x-ndjson"),
                // A UTF-8 byte order mark first (PowerShell, Notepad): not part of the body.
                ("\u{FEFF}[\(event("bom-1"))]", "application/json"),
                ("\u{FEFF}\(event("bom-2"))\n\(event("bom-3"))\n", "application/x-ndjson"),
            ]
            var expected = 0
            for (body, type) in bodies {
                try await client.execute(
                    uri: "/v1/events", method: .post, headers: headers(fixture.apiKey, contentType: type),
                    body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .accepted)
                    let accepted = response.json?["accepted"] as? Int
                    #expect(accepted == body.components(separatedBy: "\"id\"").count - 1)
                    expected += accepted ?? 0
                }
            }
            let received = try await fixture.receivedEvents(expected: expected).ids
            #expect(received.keys.sorted() == ["array-1", "array-2", "bom-1", "bom-2", "bom-3", "nd-1", "nd-2", "nd-3", "single-1"])
            #expect(received.values.allSatisfy { $0 == 1 })
        }
        try await fixture.tearDown()
    }

    @Test("the admin token sends any tenant's events; a batch over 1000 is split into messages of at most 1000")
    func adminAndBatching() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            let events = (0..<2500).map { event("bulk-\($0)", tenant: fixture.tenant.id) }
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.adminToken),
                body: ByteBuffer(string: "[\(events.joined(separator: ","))]")
            ) { response in
                #expect(response.status == .accepted)
                #expect(response.json?["accepted"] as? Int == 2500)
            }
            let received = try await fixture.receivedEvents(expected: 2500)
            #expect(received.ids.count == 2500)
            #expect(received.messages == 3)
        }
        try await fixture.tearDown()
    }

    /// Each malformed request gets its documented status, code and field, and nothing reaches the queue.
    @Test("malformed requests are refused whole, naming the field")
    func malformedRequests() async throws {
        let fixture = try await IngestFixture.make()
        let key = "Bearer " + fixture.apiKey
        let admin = "Bearer " + fixture.adminToken
        let old = RFC3339.format(now.addingTimeInterval(-91 * 86_400))
        let future = RFC3339.format(now.addingTimeInterval(600))
        let bigMetadata = String(repeating: "m", count: 9000)
        // (Authorization header, body, status, error code, field)
        let cases: [(String?, String, HTTPResponse.Status, String, String?)] = [
            (nil, event("a"), .unauthorized, "UNAUTHENTICATED", nil),
            ("Bearer tally_" + String(repeating: "f", count: 64), event("a"), .unauthorized, "INVALID_API_KEY", nil),
            ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", event("a"), .unauthorized, "UNAUTHENTICATED", nil),
            (key, "", .badRequest, "INVALID_REQUEST", "body"),
            (key, "{not json", .badRequest, "INVALID_REQUEST", "body"),
            // A key sent twice: which id or quantity counts is not Tally's to guess.
            (key, event("d1").dropLast() + #", "id": "d2"}"#, .badRequest, "INVALID_REQUEST", "events[0].id"),
            (key, "[\(event("ok")), \(event("d3").dropLast() + #", "quantity": 1000}"#)]", .badRequest, "INVALID_REQUEST", "events[1].quantity"),
            (key, "\(event("n1"))\n\(event("n2").dropLast() + #", "id": "n3"}"#)\n", .badRequest, "INVALID_REQUEST", "body.line[2].id"),
            (key, "[1, 2", .badRequest, "INVALID_REQUEST", "body"),
            (key, "[]", .badRequest, "INVALID_REQUEST", "body"),
            (key, "[42]", .badRequest, "INVALID_EVENTS", "events[0]"),
            (key, event("a", quantity: "-1"), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", quantity: #""NaN""#), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", quantity: "1.00001"), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", quantity: #""0.12345""#), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", quantity: "1000000000001"), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", quantity: "true"), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", quantity: "null"), .badRequest, "INVALID_EVENTS", "events[0].quantity"),
            (key, event("a", extra: #", "time": "\#(future)""#), .badRequest, "INVALID_EVENTS", "events[0].time"),
            (key, event("a", extra: #", "time": "\#(old)""#), .badRequest, "INVALID_EVENTS", "events[0].time"),
            (key, event("a", extra: #", "time": "24/11/2026""#), .badRequest, "INVALID_EVENTS", "events[0].time"),
            (key, event("a", extra: #", "type": "Bad Type""#), .badRequest, "INVALID_EVENTS", "events[0].type"),
            (key, event("a", extra: #", "type": 3"#), .badRequest, "INVALID_EVENTS", "events[0].type"),
            (key, event(String(repeating: "x", count: 256)), .badRequest, "INVALID_EVENTS", "events[0].id"),
            // One Character, 301 code points: PostgreSQL counts code points.
            (key, event("x" + String(repeating: "\u{0301}", count: 300)), .badRequest, "INVALID_EVENTS", "events[0].id"),
            (key, event("a", extra: #", "name": "\#(String(repeating: "e\u{0301}", count: 101))""#), .badRequest, "INVALID_EVENTS", "events[0].name"),
            (key, event("a", extra: #", "metadata": {"k": "\#(bigMetadata)"}"#), .badRequest, "INVALID_EVENTS", "events[0].metadata"),
            (key, event("a", extra: #", "metadata": "flat""#), .badRequest, "INVALID_EVENTS", "events[0].metadata"),
            (key, event("a", extra: #", "name": ["x"]"#), .badRequest, "INVALID_EVENTS", "events[0].name"),
            (key, event("a", extra: #", "colour": "red""#), .badRequest, "INVALID_EVENTS", "events[0].colour"),
            (key, "[\(event("ok")), \(event("bad", quantity: "-5"))]", .badRequest, "INVALID_EVENTS", "events[1].quantity"),
            (key, event("a", tenant: UUID()), .forbidden, "FOREIGN_TENANT", "events[0].tenant_id"),
            (admin, event("a"), .badRequest, "INVALID_EVENTS", "events[0].tenant_id"),
            (admin, event("a", tenant: UUID()), .badRequest, "INVALID_EVENTS", "events[0].tenant_id"),
            (admin, event("a", extra: #", "tenant_id": "not-a-uuid""#), .badRequest, "INVALID_EVENTS", "events[0].tenant_id"),
        ]
        let answered = try await fixture.app(now: now).test(.router) { client in
            var answered = 0
            for (authorization, body, status, code, field) in cases {
                var requestHeaders: HTTPFields = [.contentType: "application/json"]
                if let authorization { requestHeaders[.authorization] = authorization }
                answered += try await client.execute(
                    uri: "/v1/events", method: .post, headers: requestHeaders, body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == status, "\(body.prefix(80))")
                    #expect(response.errorCode == code, "\(body.prefix(80))")
                    #expect(response.errorField == field, "\(body.prefix(80))")
                    return 1
                }
            }
            // Invalid UTF-8 in an otherwise well-formed event.
            var invalidUTF8 = ByteBuffer(string: #"{"id": "a"#)
            invalidUTF8.writeBytes([0xC3, 0x28])
            invalidUTF8.writeString(#"", "type": "api_calls", "quantity": 1, "time": "\#(RFC3339.format(now))"}"#)
            try await client.execute(uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: invalidUTF8) { response in
                #expect(response.status == .badRequest)
                #expect(response.errorField == "body")
            }
            // A compressed body is refused by its coding, not as bad UTF-8; one marked with
            // a coding but readable as plain is not taken as plain either.
            for coding in ["gzip", "br", "identity, gzip"] {
                var encoded = headers(fixture.apiKey)
                encoded[.contentEncoding] = coding
                try await client.execute(uri: "/v1/events", method: .post, headers: encoded, body: ByteBuffer(string: event("coded-1"))) {
                    response in
                    #expect(response.status == .unsupportedMediaType, "\(coding)")
                    #expect(response.errorCode == "UNSUPPORTED_CONTENT_ENCODING" && response.errorField == "Content-Encoding", "\(coding)")
                    #expect(response.headers[.acceptEncoding] == "identity")
                }
            }
            // A query parameter: the ingest API takes none, so `?dry_run=true` counts nothing.
            try await client.execute(
                uri: "/v1/events?dry_run=true", method: .post, headers: headers(fixture.apiKey), body: ByteBuffer(string: event("dry-1"))
            ) { response in
                #expect(response.status == .badRequest)
                #expect(response.errorField == "dry_run")
            }
            // Another method: 405 naming the one the path takes.
            try await client.execute(uri: "/v1/events", method: .get, headers: headers(fixture.apiKey)) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "POST")
            }
            // A body over 8 MiB.
            let huge = ByteBuffer(repeating: UInt8(ascii: " "), count: (8 << 20) + 1)
            try await client.execute(uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: huge) { response in
                #expect(response.status == .contentTooLarge)
                #expect(response.errorCode == "PAYLOAD_TOO_LARGE")
            }
            return answered
        }
        #expect(try await !fixture.anyEventArrived())
        #expect(answered == cases.count)
        try await fixture.tearDown()
    }

    @Test("a refused batch lists every offending index and field")
    func everyProblemListed() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            let body = "[\(event("ok")), \(event("b1", quantity: "-1")), \(event("ok2")), \(event("b2", extra: #", "type": "X""#))]"
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: ByteBuffer(string: body)
            ) { response in
                #expect(response.status == .badRequest)
                let details = (response.json?["error"] as? [String: Any])?["details"] as? [[String: Any]] ?? []
                #expect(details.compactMap { $0["field"] as? String } == ["events[1].quantity", "events[3].type"])
                let message = (response.json?["error"] as? [String: Any])?["message"] as? String
                #expect(message?.hasPrefix("2 of 4 events are invalid") == true)
            }
        }
        #expect(try await !fixture.anyEventArrived())
        try await fixture.tearDown()
    }

    @Test("an id repeated in one request with other contents is refused, naming both; repeated as it was, it is a harmless resend")
    func conflictingRepeatedID() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            // Before: 202, and which of the two was counted depended on how the batch sorted.
            let body = "[\(event("r1")), \(event("r2")), \(event("r1", quantity: #""5""#))]"
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.apiKey), body: ByteBuffer(string: body)
            ) { response in
                #expect(response.status == .badRequest)
                let error = response.json?["error"] as? [String: Any]
                #expect(error?["field"] as? String == "events[2].id", "\(String(describing: error))")
                let detail = (error?["details"] as? [[String: Any]])?.first?["message"] as? String
                #expect(detail?.hasPrefix("conflicting_id: repeats the id of events[0] with other contents") == true, "\(String(describing: detail))")
            }
            #expect(try await !fixture.anyEventArrived())
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.apiKey),
                body: ByteBuffer(string: "[\(event("r1")), \(event("r1"))]")
            ) { response in
                #expect(response.status == .accepted)
            }
            // Ids are compared as bytes, as PostgreSQL keys them: "café" composed and decomposed
            // are two ids, so two contents are no conflict (they were refused as one id).
            try await client.execute(
                uri: "/v1/events", method: .post, headers: headers(fixture.apiKey),
                body: ByteBuffer(string: "[\(event("caf\u{E9}")), \(event("cafe\u{301}", quantity: #""5""#))]")
            ) { response in
                #expect(response.status == .accepted, "\(String(describing: response.json))")
                #expect(response.json?["accepted"] as? Int == 2)
            }
        }
        try await fixture.tearDown()
    }

    @Test("health, readiness and metrics answer without a key")
    func operations() async throws {
        let fixture = try await IngestFixture.make()
        try await fixture.app(now: now).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("tally_producer_events_dropped_total 0"))
            }
        }
        try await fixture.tearDown()
    }
}
