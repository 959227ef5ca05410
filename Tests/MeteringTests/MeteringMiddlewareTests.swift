import DiskSpool
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Metering
import MeteringHummingbird
import NIOCore
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

/// A small API server with the metering middleware, against the real broker.
@Suite("Metering middleware")
struct MeteringMiddlewareTests {
    struct Server {
        let meter: Meter
        let quotas: QuotaView
        let router: Router<BasicRequestContext>
    }

    /// The server's meter publishes to `exchange` (a probe's, where the test reads what it sent).
    func server(quotas: QuotaView = QuotaView(), exchange: String = ExchangeName.usage) async throws -> Server {
        let spool = try await DiskSpool.open(directory: TestSpool.directory(), maxBytes: 64 << 20)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(
            configuration: try TestSpool.broker, spool: spool, logger: UsageQueueProbe.logger, confirmTimeout: .seconds(5),
            counters: counters, refusalPolicy: RefusalPolicy(), exchange: exchange)
        let meter = Meter(publisher: publisher, counters: counters, logger: UsageQueueProbe.logger)
        let router = Router(context: BasicRequestContext.self)
        router.add(
            middleware: MeteringMiddleware(meter: meter, quotas: quotas, creations: ["/estimates": "estimates"]) { request, _ in
                request.headers[HTTPField.Name("x-tenant-id")!].flatMap(UUID.init(uuidString:))
            })
        router.get("/estimates/:id") { _, _ in "an estimate" }
        router.post("/estimates") { _, _ -> Response in
            Response(
                status: .created, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"id": "est-42", "total": 100}"#)))
        }
        router.get("/healthz") { _, _ in "ok" }
        return Server(meter: meter, quotas: quotas, router: router)
    }

    @Test("N requests give exactly N api_calls events with endpoint, method, status and latency; a 201 gives one estimates event")
    func metersRequests() async throws {
        let probe = try await UsageQueueProbe.make()
        let tenant = UUID()
        let server = try await server(exchange: probe.exchange)
        let meter = server.meter
        async let running: Void = meter.run()
        let app = Application(router: server.router)
        try await app.test(.router) { client in
            let headers: HTTPFields = [HTTPField.Name("x-tenant-id")!: tenant.uuidString]
            for index in 0..<25 {
                try await client.execute(uri: "/estimates/\(index)", method: .get, headers: headers) { #expect($0.status == .ok) }
            }
            try await client.execute(uri: "/estimates", method: .post, headers: headers) { response in
                #expect(response.status == .created)
                #expect(String(buffer: response.body) == #"{"id": "est-42", "total": 100}"#)
            }
            try await client.execute(uri: "/healthz", method: .get, headers: headers) { #expect($0.status == .ok) }
            try await client.execute(uri: "/estimates/1", method: .get) { #expect($0.status == .ok) }
        }
        let received = try await probe.events(tenant: tenant, expected: 27)
        meter.shutdown()
        await running
        let calls = received.filter { $0["type"] as? String == "api_calls" }
        let estimates = received.filter { $0["type"] as? String == "estimates" }
        #expect(calls.count == 26)
        #expect(estimates.count == 1)
        #expect(estimates.first?["id"] as? String == "estimates:\(tenant):est-42")
        let metadata = try #require(calls.first?["metadata"] as? [String: Any])
        #expect(metadata["endpoint"] as? String == "/estimates/{id}" || metadata["endpoint"] as? String == "/estimates/:id")
        #expect(metadata["method"] as? String == "GET")
        #expect((metadata["status"] as? NSNumber)?.intValue == 200)
        #expect(metadata["latency_ms"] != nil)
        #expect(calls.contains { ($0["metadata"] as? [String: Any])?["method"] as? String == "POST" })
        try await probe.delete()
    }

    @Test("quota state broadcast on quota.state makes a hard quota answer 429, and no subscription 403")
    func enforcesHardQuota() async throws {
        let tenant = UUID()
        let broke = UUID()
        let view = QuotaView()
        let listener = QuotaStateListener(configuration: try TestSpool.broker, view: view, logger: UsageQueueProbe.logger)
        let server = try await server(quotas: view)
        let meter = server.meter
        let router = server.router
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await listener.run() }
            group.addTask { await meter.run() }
            let publisher = try await QuotaBroadcast.publisher()
            let exhausted = QuotaState(
                tenantID: tenant, asOf: Date(), periodStart: nil, periodEnd: nil, subscription: .active,
                metrics: [
                    "api_calls": .init(used: 1000, quota: 1000, enforcement: .hard),
                    "estimates": .init(used: 10, quota: 50, enforcement: .hard),
                ])
            let none = QuotaState(tenantID: broke, asOf: Date(), periodStart: nil, periodEnd: nil, subscription: .none, metrics: [:])
            // Broadcast until the listener's queue exists and the view has both states.
            let deadline = ContinuousClock.now + .seconds(30)
            while view.decision(tenant: tenant, metric: "api_calls", now: Date()) == .unknown
                || view.decision(tenant: broke, metric: "api_calls", now: Date()) == .unknown
            {
                try #require(ContinuousClock.now < deadline, "the quota state never reached the view")
                // One state alone, and one in an array with another tenant's (as the Aggregator
                // sends the states of a batch): the listener reads both forms.
                let other = QuotaState(tenantID: UUID(), asOf: Date(), periodStart: nil, periodEnd: nil, subscription: .active, metrics: [:])
                for body in [exhausted.encoded(), QuotaState.encoded([other, none])] {
                    _ = try await publisher.publish([
                        OutgoingMessage(exchange: ExchangeName.quotaState, routingKey: "", body: body, mandatory: false)
                    ])
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let app = Application(router: router)
            try await app.test(.router) { client in
                try await client.execute(
                    uri: "/estimates/1", method: .get, headers: [HTTPField.Name("x-tenant-id")!: tenant.uuidString]
                ) { response in
                    #expect(response.status == .tooManyRequests)
                    let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                    let error = json?["error"] as? [String: Any]
                    #expect(error?["code"] as? String == "QUOTA_EXCEEDED")
                    #expect(error?["usage"] as? String == "1000")
                    #expect(error?["quota"] as? String == "1000")
                }
                try await client.execute(
                    uri: "/estimates/1", method: .get, headers: [HTTPField.Name("x-tenant-id")!: broke.uuidString]
                ) { response in
                    #expect(response.status == .forbidden)
                    #expect(String(buffer: response.body).contains("NO_SUBSCRIPTION"))
                }
                // A tenant with no state at all is allowed and metered.
                try await client.execute(
                    uri: "/estimates/1", method: .get, headers: [HTTPField.Name("x-tenant-id")!: UUID().uuidString]
                ) { #expect($0.status == .ok) }
            }
            meter.shutdown()
            group.cancelAll()
        }
    }
}

extension UsageQueueProbe {
    /// The raw events of `tenant` on the queue.
    func events(tenant: UUID, expected: Int, quiet: Duration = .seconds(10)) async throws -> [[String: Any]] {
        try await connection.consume(queue)
        var events: [[String: Any]] = []
        while events.count < expected, let delivery = try await connection.nextDelivery(timeout: quiet) {
            let batch = try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [[String: Any]] ?? []
            events += batch.filter { $0["tenant_id"] as? String == tenant.uuidString.lowercased() }
            try await connection.ack(delivery.deliveryTag)
        }
        return events
    }
}

enum QuotaBroadcast {
    static func publisher() async throws -> AMQPConnection {
        let connection = try await AMQPConnection.connect(configuration: try TestSpool.broker, logger: UsageQueueProbe.logger)
        try await connection.openChannel(1, confirms: true)
        try await Topology.tally.declare(on: connection)
        return connection
    }
}
