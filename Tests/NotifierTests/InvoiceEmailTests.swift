import Foundation
import Invoicing
import PostgresClient
import TallyMessaging
import TallyStore
import TallyTestSupport
import Testing

@Suite("Notifier: invoice emails to finance and the tenant")
struct InvoiceEmailTests {
    @Test("a billing run emails finance and the tenant once each, with the PDF; a name with CR/LF injects no header")
    func billingRunEmails() async throws {
        let harness = try await NotifierHarness.make()
        let email = "ap-\(harness.id)@customer.test"
        // A hostile name: a line break and a header after it must stay inside the name.
        let tenant = try await harness.tenant(name: "Acme \(harness.id)\r\nBcc: thief@evil.test", email: email, taxBps: 725)
        let invoice = try #require(try await harness.billedInvoices(tenant: tenant).first)
        #expect(invoice.totalCents == 29_900 + 2_168)
        // The stack's own notifier consumes billing.events: the real pipeline.
        let emails = try await MailSink.waitForEmails(mentioning: invoice.number, count: 2)
        #expect(emails.count == 2)
        let finance = try #require(emails.first { $0.to.contains("finance@tally.localhost") })
        let customer = try #require(emails.first { $0.to.contains(email) })
        for message in [finance, customer] {
            #expect(message.defects.isEmpty, "\(message.defects)")
            #expect(!message.headers.contains("bcc"))
            #expect(!message.text.isEmpty && message.html.contains("<table"))
            #expect(message.subject.contains(invoice.number) && message.subject.contains("$320.68"))
            #expect(message.text.contains("$320.68") && message.text.contains("Due"))
            let pdf = try #require(message.attachments.first)
            #expect(pdf.filename == "\(invoice.number).pdf" && pdf.contentType == "application/pdf")
            #expect(pdf.pdfText.contains(invoice.number) && pdf.pdfText.contains("$320.68"))
            #expect(pdf.longestLine <= 76)
        }
        #expect(finance.subject.hasPrefix("[Finance copy]"))
        #expect(customer.to.contains("Acme \(harness.id)"))
        #expect(finance.messageID != customer.messageID)
        let recorded = try await harness.database.query(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FROM notifications WHERE event_id = $1",
            ["invoice.finalized:\(invoice.id.uuidString.lowercased())"])
        #expect(try recorded[0].decode(0, as: Int.self) == 2 && recorded[0].decode(1, as: Int.self) == 2)
        try await harness.tearDown()
    }

    @Test("an invoice in yen: the email, its subject and its PDF write ¥ without minor digits")
    func yenInvoiceEmail() async throws {
        let harness = try await NotifierHarness.make()
        let code = "test-yen-\(harness.id)"
        _ = try await CatalogStore(pool: harness.database).create(
            StoredPlanVersion(
                code: code, version: 0, name: "Yen plan", currency: "jpy", interval: "month", baseCents: 2_990, trialDays: 0, charges: []))
        let email = "ap-yen-\(harness.id)@customer.test"
        let tenant = try await harness.tenant(name: "Yen \(harness.id)", email: email)
        // As its first subscription would (SubscriptionStore), the tenant bills in the plan's currency.
        try await harness.database.query("UPDATE tenants SET currency = 'jpy' WHERE id = $1", [tenant])
        let invoice = try #require(try await harness.billedInvoices(tenant: tenant, plan: code).first)
        #expect(invoice.currency == "jpy" && invoice.totalCents == 2_990)
        let emails = try await MailSink.waitForEmails(mentioning: invoice.number, count: 2)
        let customer = try #require(emails.first { $0.to.contains(email) })
        #expect(customer.subject.contains("¥2,990") && customer.text.contains("¥2,990"), "\(customer.subject)")
        #expect(!customer.text.contains("$"))
        let pdf = try #require(customer.attachments.first)
        #expect(pdf.pdfText.contains("¥2,990") && pdf.pdfText.contains("Amounts in JPY"), "\(pdf.pdfText)")
        try await harness.tearDown()
    }

    @Test("the same invoice.finalized delivered twice, and replayed from the parking lot after it was sent: one email each")
    func redeliveredAndReplayedOnce() async throws {
        let harness = try await NotifierHarness.make()
        let email = "dup-\(harness.id)@customer.test"
        let tenant = try await harness.tenant(name: "Twice \(harness.id)", email: email)
        let invoice = try #require(try await harness.billedInvoices(tenant: tenant).first)
        let first = try await MailSink.waitForEmails(mentioning: invoice.number, count: 2)
        #expect(first.count == 2)
        let notifier = try harness.startNotifier()
        try await harness.publish(.finalized(invoice))
        try await harness.publish(.finalized(invoice))
        try await harness.publish(.finalized(invoice), parked: true)
        try await harness.waitUntil("the parked copy in the parking lot") { try await harness.depth(".parked") == 1 }
        let replay = try await harness.dlq("replay")
        #expect(replay.output.contains("replayed 1 parked event(s)"), "\(replay.errors)")
        // One consumer takes its queue in order: once the marker behind them is mailed, the copies were handled.
        let marker = BillingEvent.marker(tenant: tenant, metric: "marker_\(harness.id)")
        try await harness.publish(marker)
        let markerMail = try await MailSink.waitForEmails(mentioning: "marker_\(harness.id)", count: 1)
        #expect(markerMail.count == 1)
        #expect(try await MailSink.emails(mentioning: invoice.number).count == 2)
        #expect(try await harness.depth(".parked") == 0)
        #expect(await notifier.stop() == 0)
        try await harness.tearDown()
    }
}
