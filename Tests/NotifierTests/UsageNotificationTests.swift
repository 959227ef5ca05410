import Foundation
import PostgresClient
import RabbitMQClient
import TallyMessaging
import TallyTestSupport
import Testing
import UsageEvents

@Suite("Notifier: usage alerts and quota emails through the whole pipeline")
struct UsageNotificationTests {
    @Test("usage over a threshold alert and over the quota, sent to the running aggregator, reaches the tenant as two emails")
    func alertAndQuotaEmails() async throws {
        let harness = try await NotifierHarness.make()
        let email = "usage-\(harness.id)@customer.test"
        let tenant = try await harness.tenant(name: "Usage \(harness.id)", email: email)
        let start = TestClock.now().addingTimeInterval(-86_400)
        let subscription = try await harness.database.query(
            "INSERT INTO subscriptions (tenant_id, started_at, anchor) VALUES ($1, $2, $2) RETURNING id", [tenant, start]
        )[0].decode(0, as: UUID.self)
        try await harness.database.query(
            """
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            VALUES ($1, 'starter', 1, $2, 'start', $2)
            """, [subscription, start])
        try await harness.database.query(
            "INSERT INTO usage_alerts (tenant_id, metric, kind, threshold_value, channels) VALUES ($1, 'estimates', 'threshold', 10, '{email}')",
            [tenant])
        // 51 estimates: past the alert's 10 and the starter plan's quota of 50.
        let time = RFC3339.format(TestClock.now().addingTimeInterval(-60))
        let events = (0..<51).map {
            #"{"id": "u\#($0)-\#(harness.id)", "tenant_id": "\#(tenant.uuidString.lowercased())", "type": "estimates", "quantity": 1, "time": "\#(time)"}"#
        }
        let message = OutgoingMessage(
            exchange: ExchangeName.usage, routingKey: RoutingKey.usageV1, body: Array(("[" + events.joined(separator: ",") + "]").utf8),
            properties: AMQPProperties(
                contentType: "application/json", messageID: EventID.make(), persistent: true,
                headers: [HeaderName.schema: .string("usage.v1")]),
            mandatory: true)
        // A nack on the shared usage exchange (seen once under CI load) is published again,
        // as a real publisher would; the Aggregator counts each event once.
        var outcome = try await harness.broker.publish([message])
        for _ in 1..<5 where outcome == [.nacked] { outcome = try await harness.broker.publish([message]) }
        #expect(outcome == [.confirmed])
        let emails = try await MailSink.waitForEmails(mentioning: email, count: 2)
        let subjects = emails.map(\.subject).sorted()
        #expect(subjects == ["Quota exceeded: estimates 51 of 50", "Usage alert: estimates reached 10"], "\(subjects)")
        #expect(emails.allSatisfy { $0.defects.isEmpty && $0.attachments.isEmpty })
        try await harness.tearDown()
    }
}
