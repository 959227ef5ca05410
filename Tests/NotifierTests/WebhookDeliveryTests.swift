import Foundation
import PostgresClient
import TallyMessaging
import TallyStore
import TallyTestSupport
import Testing

@Suite("Notifier: signed webhooks, retried with backoff, parked and replayed")
struct WebhookDeliveryTests {
    func endpoint(
        _ harness: NotifierHarness, tenant: UUID, receiver: WebhookReceiver, name: String, events: [String] = ["*"],
        failFirst: Int = 0, failing: Bool = false, hanging: Bool = false
    ) async throws {
        let (_, secret) = try #require(
            try await WebhookEndpointStore(pool: harness.database).create(
                tenant: tenant, url: "\(receiver.baseURL)/hooks/\(name)", events: events, description: "test \(name)", limit: 16))
        await receiver.inbox.expect(name, secret: secret.value, failFirst: failFirst, failing: failing, hanging: hanging)
    }

    static func alert(_ tenant: UUID, metric: String) -> BillingEvent {
        .alertTriggered(
            .init(
                tenantID: tenant, occurredAt: Date(timeIntervalSince1970: TestClock.now().timeIntervalSince1970.rounded(.down)), alertID: UUID(),
                alertKind: "threshold", thresholdKey: "threshold:5", metric: metric,
                value: "7", threshold: "5", quota: nil, periodStart: Date(timeIntervalSince1970: 1_790_000_000),
                periodEnd: Date(timeIntervalSince1970: 1_792_592_000), channels: ["webhook"]))
    }

    @Test("a receiver failing three times then succeeding gets the event once, after the retry queues' waits")
    func flakyReceiver() async throws {
        let harness = try await NotifierHarness.make()
        let receiver = try await WebhookReceiver.shared()
        let tenant = try await harness.tenant(name: "Flaky \(harness.id)", email: "flaky@hooks.test")
        try await endpoint(harness, tenant: tenant, receiver: receiver, name: "flaky-\(harness.id)", events: ["alert.triggered"], failFirst: 3)
        let notifier = try harness.startNotifier()
        let event = Self.alert(tenant, metric: "calls_\(harness.id)")
        try await harness.publish(event)
        try await harness.waitUntil("the fourth attempt accepted") { await receiver.inbox.deliveries("flaky-\(harness.id)").count == 1 }
        // A second event behind it: once it arrives, nothing of the first is still in flight.
        let marker = Self.alert(tenant, metric: "marker_\(harness.id)")
        try await harness.publish(marker)
        try await harness.waitUntil("the marker delivered") { await receiver.inbox.deliveries("flaky-\(harness.id)").count == 2 }
        let deliveries = await receiver.inbox.deliveries("flaky-\(harness.id)")
        #expect(deliveries.map(\.eventID) == [event.id, marker.id])
        #expect(try BillingEvent.decode(Array(deliveries[0].body)) == event)
        let attempts = await receiver.inbox.attemptTimes("flaky-\(harness.id)")
        #expect(attempts.count == 5)
        // Backoff through the retry queues: at least 1 s, 2 s and 3 s between the attempts.
        let gaps = zip(attempts.dropFirst(), attempts).map { $0 - $1 }
        #expect(gaps.count >= 3 && gaps[0] >= .milliseconds(900) && gaps[1] >= .milliseconds(1_900) && gaps[2] >= .milliseconds(2_900))
        #expect(await receiver.inbox.badSignatures == 0)
        let row = try await harness.database.query("SELECT status, attempts, response_code FROM notifications WHERE event_id = $1", [event.id])
        #expect(row.first?.text(0) == "sent" && row.first?.text(1) == "4" && row.first?.text(2) == "200")
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }

    @Test("a receiver that always fails ends parked; after it recovers, notifier dlq replay --id delivers that one once; purge --id drops the other")
    func parkedThenReplayed() async throws {
        let harness = try await NotifierHarness.make()
        let receiver = try await WebhookReceiver.shared()
        let tenant = try await harness.tenant(name: "Down \(harness.id)", email: "down@hooks.test")
        let name = "down-\(harness.id)"
        try await endpoint(harness, tenant: tenant, receiver: receiver, name: name, failing: true)
        let notifier = try harness.startNotifier()
        let event = Self.alert(tenant, metric: "calls_\(harness.id)")
        let other = Self.alert(tenant, metric: "other_\(harness.id)")
        try await harness.publish(event)
        try await harness.publish(other)
        try await harness.waitUntil("both events parked after their 4 attempts") { try await harness.depth(".parked") == 2 }
        #expect(await receiver.inbox.attemptTimes(name).count == 8)
        let listing = try await harness.dlq("list")
        #expect(listing.output.contains("parked events in \(harness.queue).parked: 2"))
        #expect(listing.output.contains("failed 4 times") && listing.output.contains("HTTP 503"), "\(listing.output)")
        let shown = try await harness.dlq("show", event.id)
        #expect(shown.output.contains("webhook") && shown.output.contains("failed after 4 attempt(s), code 503"), "\(shown.output)")
        // The endpoint by its id, not its URL (a URL can carry the receiver's token).
        #expect(shown.output.contains("webhook endpoint ") && !shown.output.contains("webhook http"), "\(shown.output)")
        await receiver.inbox.recover(name)
        // A mistyped id moves nothing and says so (exit 1), rather than "replayed 0".
        let mistyped = try await harness.dlq("replay", "--id", event.id, "--id", "evt_not_parked")
        #expect(mistyped.status == 1 && mistyped.errors.contains("not parked in \(harness.queue).parked: evt_not_parked"), "\(mistyped)")
        #expect(try await harness.depth(".parked") == 2)
        let replayed = try await harness.dlq("replay", "--id", event.id)
        #expect(replayed.output.contains("replayed 1 parked event(s)"), "\(replayed)")
        try await harness.waitUntil("the replayed event delivered") { await receiver.inbox.deliveries(name).count == 1 }
        #expect(await receiver.inbox.deliveries(name).map(\.eventID) == [event.id])
        // The other one stayed parked, reason and all.
        #expect(try await harness.depth(".parked") == 1)
        #expect(try await harness.dlq("show", other.id).output.contains("failed after 4 attempt(s), code 503"))
        #expect(try await harness.dlq("purge", "--id", other.id).status != 0)  // needs --yes
        #expect(try await harness.dlq("purge", "--id", other.id, "--yes").output.contains("purged 1 parked event(s)"))
        #expect(try await harness.depth(".parked") == 0)
        #expect(await receiver.inbox.deliveries(name).map(\.eventID) == [event.id])
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }

    @Test("a tenant's 16 endpoints that hang hold another tenant's event on the same consumer for one attempt's budget, not for all of them")
    func hangingEndpointsDoNotHoldOthers() async throws {
        let harness = try await NotifierHarness.make()
        let receiver = try await WebhookReceiver.shared()
        let slow = try await harness.tenant(name: "Slow \(harness.id)", email: "slow@hooks.test")
        let hanging = (0..<16).map { "hang-\(harness.id)-\($0)" }
        for name in hanging { try await endpoint(harness, tenant: slow, receiver: receiver, name: name, hanging: true) }
        let other = try await harness.tenant(name: "Other \(harness.id)", email: "other@hooks.test")
        try await endpoint(harness, tenant: other, receiver: receiver, name: "other-\(harness.id)")
        let notifier = try harness.startNotifier()  // one consumer: the other event waits behind the slow one
        try await harness.publish(Self.alert(slow, metric: "calls_\(harness.id)"))
        let behind = Self.alert(other, metric: "calls_\(harness.id)")
        try await harness.publish(behind)
        try await harness.waitUntil("the other tenant's event delivered") { await receiver.inbox.deliveries("other-\(harness.id)").count == 1 }
        // Before, the 16 were tried one after another (10 s each) before anything behind them.
        var tried = 0
        for name in hanging { tried += await receiver.inbox.attemptTimes(name).count }
        #expect(tried < hanging.count, "all \(tried) hanging endpoints were tried before the other tenant's event")
        #expect(await receiver.inbox.deliveries("other-\(harness.id)").map(\.eventID) == [behind.id])
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }

    @Test("endpoints that hung are not waited on again for a minute: a tenant's many events hold another's for one timeout, not one each")
    func hungEndpointsCoolDown() async throws {
        let harness = try await NotifierHarness.make()
        let receiver = try await WebhookReceiver.shared()
        let slow = try await harness.tenant(name: "Many alerts \(harness.id)", email: "many@hooks.test")
        // As many as one round sends at once: each event of the slow tenant took one timeout.
        let hanging = (0..<4).map { "cool-\(harness.id)-\($0)" }
        for name in hanging { try await endpoint(harness, tenant: slow, receiver: receiver, name: name, hanging: true) }
        let other = try await harness.tenant(name: "Other \(harness.id)", email: "other@hooks.test")
        try await endpoint(harness, tenant: other, receiver: receiver, name: "after-\(harness.id)")
        let notifier = try harness.startNotifier()  // one consumer: the other tenant's event waits behind the three
        for index in 0..<3 { try await harness.publish(Self.alert(slow, metric: "calls_\(index)_\(harness.id)")) }
        let behind = Self.alert(other, metric: "calls_\(harness.id)")
        try await harness.publish(behind)
        try await harness.waitUntil("the other tenant's event delivered") { await receiver.inbox.deliveries("after-\(harness.id)").count == 1 }
        // Before, each of the three events waited out the four again (every endpoint tried three times).
        var attempts: [Int] = []
        for name in hanging { attempts.append(await receiver.inbox.attemptTimes(name).count) }
        #expect(attempts == [1, 1, 1, 1])
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }

    @Test("without the allow flag a loopback URL is refused at delivery and parked at once; B's events never reach A")
    func privateRefusedAndTenantsApart() async throws {
        let harness = try await NotifierHarness.make()
        let receiver = try await WebhookReceiver.shared()
        let alice = try await harness.tenant(name: "Alice \(harness.id)", email: "alice@hooks.test")
        let bob = try await harness.tenant(name: "Bob \(harness.id)", email: "bob@hooks.test")
        try await endpoint(harness, tenant: alice, receiver: receiver, name: "alice-\(harness.id)")
        try await endpoint(harness, tenant: bob, receiver: receiver, name: "bob-\(harness.id)")
        let strict = try harness.startNotifier(allowPrivate: false)
        try await harness.publish(Self.alert(bob, metric: "calls_\(harness.id)"))
        try await harness.waitUntil("the loopback delivery parked") { try await harness.depth(".parked") == 1 }
        #expect(try await harness.dlq("list").output.contains("loopback, private or link-local"))
        #expect(await receiver.inbox.attemptTimes("bob-\(harness.id)").isEmpty)
        #expect(await strict.stop() == 0)
        #expect(try await harness.dlq("purge", "--yes").output.contains("purged 1 parked event(s)"))

        let notifier = try harness.startNotifier()
        let forBob = Self.alert(bob, metric: "bob_\(harness.id)")
        let forAlice = Self.alert(alice, metric: "alice_\(harness.id)")
        try await harness.publish(forBob)
        try await harness.publish(forAlice)
        try await harness.waitUntil("both delivered") {
            let alices = await receiver.inbox.deliveries("alice-\(harness.id)").count
            let bobs = await receiver.inbox.deliveries("bob-\(harness.id)").count
            return alices == 1 && bobs == 1
        }
        #expect(await receiver.inbox.deliveries("alice-\(harness.id)").map(\.eventID) == [forAlice.id])
        #expect(await receiver.inbox.deliveries("bob-\(harness.id)").map(\.eventID) == [forBob.id])
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }
}
