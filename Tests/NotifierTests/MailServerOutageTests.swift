import Foundation
import Invoicing
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

/// Stops the real SMTP sink: runs only in the serial outage phase of `./ops/local.sh test`.
@Suite("Notifier: the mail server down while invoices are issued (outage)", .serialized, .enabled(if: TestEnvironment.disruptive))
struct MailServerOutageTests {
    @Test("SMTP sink stopped while 100 invoices are finalized, then started: all 200 emails arrive, none twice")
    func sinkDownThenUp() async throws {
        let harness = try await NotifierHarness.make()
        var tenants: [UUID] = []
        for index in 0..<10 {
            tenants.append(try await harness.tenant(name: "Outage \(harness.id) #\(index)", email: "outage-\(harness.id)-\(index)@mail.test"))
        }
        try await TestEnvironment.ops("stop", "smtp")
        var invoices: [InvoiceView] = []
        for tenant in tenants {
            invoices += try await harness.billedInvoices(tenant: tenant, subscriptions: 10)
        }
        #expect(invoices.count == 100)
        // The stack's notifier gets these events too, behind whatever backlog earlier tests
        // left; this test's own notifier gets them at once. Either may send each email:
        // the delivery records keep it to one.
        let notifier = try harness.startNotifier()
        for invoice in invoices { try await harness.publish(.finalized(invoice)) }
        let events = PostgresTextArray(invoices.map { "invoice.finalized:\($0.id.uuidString.lowercased())" })
        try await harness.waitUntil("the notifier saw the mail server down") {
            try await harness.database.query(
                "SELECT count(*) FROM notifications WHERE status = 'failed' AND event_id = ANY($1::text[])", [events]
            )[0].decode(0, as: Int.self) > 0
        }
        try await TestEnvironment.ops("start", "smtp")
        let emails = try await MailSink.waitForEmails(mentioning: harness.id, count: 200)
        #expect(emails.count == 200)
        #expect(Set(emails.map(\.messageID)).count == 200)
        let sent = try await harness.database.query(
            "SELECT count(*) FROM notifications n JOIN invoices i ON n.event_id = 'invoice.finalized:' || i.id WHERE i.tenant_id = ANY($1::uuid[]) AND n.status = 'sent'",
            ["{" + tenants.map(\.uuidString).joined(separator: ",") + "}"])
        #expect(try sent[0].decode(0, as: Int.self) == 200)
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }
}
