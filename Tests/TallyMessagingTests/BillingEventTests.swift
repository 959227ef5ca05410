import Foundation
import TallyMessaging
import Testing

@Suite("Billing events and commands on the wire")
struct BillingEventTests {
    let tenant = UUID()
    let start = Date(timeIntervalSince1970: 1_793_491_200)  // 2026-11-01T00:00:00Z
    let end = Date(timeIntervalSince1970: 1_796_083_200)

    var samples: [BillingEvent] {
        [
            .invoiceFinalized(
                .init(
                    tenantID: tenant, occurredAt: end, invoiceID: UUID(), number: "INV-2026-000001", kind: "period", currency: "usd",
                    periodStart: start, periodEnd: end, subtotalCents: 29_900, taxCents: 2_168, totalCents: 32_068,
                    dueAt: end.addingTimeInterval(30 * 86_400))),
            .invoicePaymentFailed(
                .init(
                    tenantID: tenant, occurredAt: end, invoiceID: UUID(), number: "INV-2026-000002", currency: "usd", amountDueCents: 100,
                    attemptCount: 2, nextAttemptAt: nil, failureMessage: "Your card was declined.", stripeEventID: "evt_1")),
            .alertTriggered(
                .init(
                    tenantID: tenant, occurredAt: end, alertID: UUID(), alertKind: "quota", thresholdKey: "quota:80", metric: "api_calls",
                    value: "812.5", threshold: "80", quota: "1000", periodStart: start, periodEnd: end, channels: ["email", "webhook"])),
            .quotaExceeded(
                .init(
                    tenantID: tenant, occurredAt: end, metric: "estimates", value: "51", quota: "50", enforcement: "soft",
                    periodStart: start, periodEnd: end)),
        ]
    }

    @Test("every event survives its own encoding, carries type and version 1, and keeps its id")
    func roundTrip() throws {
        for event in samples {
            let body = try event.encoded()
            #expect(try BillingEvent.decode(body) == event)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
            #expect(object["type"] as? String == event.type)
            #expect(object["version"] as? Int == 1)
            #expect(object["id"] as? String == event.id)
            #expect(object["tenant_id"] as? String == tenant.uuidString.lowercased())
        }
    }

    @Test("dedup ids keep the form written before messages were typed (once per period across an upgrade)")
    func stableIDs() throws {
        guard case .quotaExceeded(let quota) = samples[3], case .alertTriggered(let alert) = samples[2] else { return }
        #expect(quota.id == "quota.exceeded:\(tenant.uuidString):estimates:2026-11-01T00:00:00Z")
        #expect(alert.id == "alert.triggered:\(alert.alertID.uuidString):2026-11-01T00:00:00Z:quota:80")
    }

    @Test("a body that is not a v1 billing event is refused with a reason naming what is wrong")
    func refusals() throws {
        func reason(_ text: String) -> String {
            do {
                _ = try BillingEvent.decode(Array(text.utf8))
                return "decoded"
            } catch {
                return error.reason
            }
        }
        #expect(reason("not json") == "body is not JSON")
        #expect(reason(#"{"type": "invoice.finalized", "version": 2}"#).contains("version 2 is not supported"))
        #expect(reason(#"{"type": "invoice.voided", "version": 1}"#) == "unknown billing event type \"invoice.voided\"")
        #expect(reason(#"{"type": "quota.exceeded", "version": 1, "id": "x"}"#).contains("is missing"))
        var body = String(decoding: try samples[0].encoded(), as: UTF8.self)
        body = body.replacingOccurrences(of: "\"total_cents\":32068", with: "\"total_cents\":\"lots\"")
        #expect(reason(body).contains("total_cents"))
    }

    @Test("invoice.generate commands round-trip, and bodies written before versioning still read")
    func commands() throws {
        let command = InvoiceGenerateCommand(billingRunID: UUID(), subscriptionID: UUID(), periodIndex: 3, kind: "adjustment")
        #expect(try InvoiceGenerateCommand.decode(try command.encoded()) == command)
        let legacy = #"{"billing_run_id": "\#(command.billingRunID)", "subscription_id": "\#(command.subscriptionID)", "period_index": 3}"#
        let read = try InvoiceGenerateCommand.decode(Array(legacy.utf8))
        #expect(read.periodIndex == 3 && !read.isAdjustment)
        #expect(
            command.messageID
                == "invoice.generate:\(command.billingRunID.uuidString.lowercased()):\(command.subscriptionID.uuidString.lowercased()):3")
        #expect(throws: MessageDecodingError.self) { try InvoiceGenerateCommand.decode(Array(#"{"type": "invoice.generate", "version": 9}"#.utf8)) }
    }
}
