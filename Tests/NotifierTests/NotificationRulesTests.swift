import CurlClient
import Foundation
import Invoicing
import Notifications
import TallyMessaging
import TallyStore
import Testing

/// The pure parts of notifying: who is told, what the emails say, how webhooks are
/// signed and where they may go. No servers.
@Suite("Notifications: plans, emails, signatures, addresses")
struct NotificationRulesTests {
    let tenant = UUID()
    let start = Date(timeIntervalSince1970: 1_793_491_200)  // Nov 1, 2026
    let end = Date(timeIntervalSince1970: 1_796_083_200)  // Dec 1, 2026

    func endpoint(tenant: UUID, events: [String], active: Bool = true) -> WebhookEndpoint {
        WebhookEndpoint(
            id: UUID(), tenantID: tenant, url: "https://hooks.example/\(UUID())", events: events, active: active, description: nil,
            createdAt: start, updatedAt: start)
    }

    func invoice(kind: String = "period", subtotal: Int64 = 29_900, tax: Int64 = 2_168, status: String = "open") -> InvoiceView {
        InvoiceView(
            id: UUID(), number: "INV-2026-000777", status: status, kind: kind, tenantID: tenant, subscriptionID: UUID(), currency: "usd",
            periodStart: start, periodEnd: end, subtotalCents: subtotal, taxRateBps: 725, taxCents: tax, totalCents: subtotal + tax,
            issuedAt: end, dueAt: end.addingTimeInterval(30 * 86_400),
            lines: [
                .init(
                    kind: "base", metric: nil, description: "Starter plan, Nov 1 – Dec 1, 2026", quantity: "1", unitPriceCents: "29900",
                    amountCents: 29_900)
            ])
    }

    @Test("invoices go to finance and the tenant; alerts follow their channels; only the tenant's active, subscribed endpoints")
    func plans() {
        let mine = endpoint(tenant: tenant, events: ["invoice.finalized", "quota.exceeded"])
        let all = endpoint(tenant: tenant, events: ["*"])
        let paused = endpoint(tenant: tenant, events: ["*"], active: false)
        let theirs = endpoint(tenant: UUID(), events: ["*"])
        let endpoints = [mine, all, paused, theirs]
        let finalized = BillingEvent.invoiceFinalized(
            .init(
                tenantID: tenant, occurredAt: end, invoiceID: UUID(), number: "INV-1", kind: "period", currency: "usd", periodStart: start,
                periodEnd: end, subtotalCents: 1, taxCents: 0, totalCents: 1, dueAt: nil))
        let plan = NotificationPlanner.plan(finalized, tenantEmail: "ap@t.test", financeEmail: "fin@s.test", endpoints: endpoints)
        #expect(plan.map(\.recipient) == ["fin@s.test", "ap@t.test", mine.url, all.url])
        #expect(plan.map(\.audience) == [.finance, .tenant, .tenant, .tenant])
        #expect(Set(plan.map(\.dedupKey)).count == 4)
        func alert(_ channels: [String]) -> BillingEvent {
            .alertTriggered(
                .init(
                    tenantID: tenant, occurredAt: end, alertID: UUID(), alertKind: "threshold", thresholdKey: "threshold:5", metric: "api_calls",
                    value: "6", threshold: "5", quota: nil, periodStart: start, periodEnd: end, channels: channels))
        }
        #expect(
            NotificationPlanner.plan(alert(["email"]), tenantEmail: "ap@t.test", financeEmail: "f@s.test", endpoints: endpoints).map(\.channel) == [
                .email
            ])
        #expect(
            NotificationPlanner.plan(alert(["webhook"]), tenantEmail: "ap@t.test", financeEmail: "f@s.test", endpoints: endpoints).map(\.recipient)
                == [all.url])
        // The same notification planned twice keeps its key and Message-ID (a redelivery is recognisable).
        let again = NotificationPlanner.plan(finalized, tenantEmail: "AP@t.test", financeEmail: "fin@s.test", endpoints: endpoints)
        #expect(again[1].dedupKey == plan[1].dedupKey && again[1].messageID(domain: "s.test") == plan[1].messageID(domain: "s.test"))
    }

    /// The two emails of `invoice()`'s finalization: finance's copy, then the tenant's.
    func invoiceEmails(tenantEmail: String) -> [PlannedNotification] {
        NotificationPlanner.plan(
            .invoiceFinalized(
                .init(
                    tenantID: tenant, occurredAt: end, invoiceID: UUID(), number: "INV-2026-000777", kind: "period", currency: "usd",
                    periodStart: start, periodEnd: end, subtotalCents: 29_900, taxCents: 2_168, totalCents: 32_068, dueAt: nil)),
            tenantEmail: tenantEmail, financeEmail: "finance@tally.test", endpoints: [])
    }

    @Test("an invoice email: amount, due date and PDF; adjustments say so; a hostile name stays inside its header")
    func invoiceEmails() throws {
        let email = NotificationEmail(sellerName: "Tally Billing", sellerEmail: "billing@tally.test")
        let hostile = NotificationEmail.Recipient(name: "Acme\r\nBcc: thief@evil.test <b>", email: "ap@acme.test")
        let notification = invoiceEmails(tenantEmail: "ap@acme.test")[1]
        let message = email.invoice(invoice(), pdf: Array("%PDF-1.5 test".utf8), tenant: hostile, to: notification)
        #expect(message.subject == "Invoice INV-2026-000777 from Tally Billing: $320.68 due Dec 31, 2026")
        #expect(message.textBody.contains("Nov 1 – Dec 1, 2026") && message.textBody.contains("$320.68 (USD)"))
        #expect(message.htmlBody?.contains("&lt;b&gt;") == true && message.htmlBody?.contains("<b>") == false)
        #expect(message.attachments.map(\.filename) == ["INV-2026-000777.pdf"])
        let rendered = try message.rendered(date: end)
        let headers = rendered.components(separatedBy: "\r\n\r\n")[0].components(separatedBy: "\r\n")
        #expect(!headers.contains { $0.lowercased().hasPrefix("bcc:") })
        let adjustment = email.invoice(invoice(kind: "adjustment"), pdf: [], tenant: hostile, to: notification)
        #expect(adjustment.subject.hasPrefix("Adjustment invoice INV-2026-000777"))
        #expect(adjustment.textBody.contains("bills usage that arrived after its period had been invoiced"))
        // A negative adjustment is a credit note: nothing due (it read "-$8.66 due Jan 1").
        let credit = email.invoice(invoice(kind: "adjustment", subtotal: -800, tax: -58), pdf: [], tenant: hostile, to: notification)
        #expect(credit.subject.hasPrefix("Credit note INV-2026-000777") && credit.subject.hasSuffix(": $8.58 credited"), "\(credit.subject)")
        #expect(!credit.subject.contains("due") && !credit.textBody.contains("Amount due"), "\(credit.textBody)")
        #expect(credit.textBody.contains("Nothing is due: the difference is credited to your account"))
        #expect(credit.textBody.contains("$8.58 (USD)"))
        // Sent again once paid: paid, not due.
        let paid = email.invoice(invoice(status: "paid"), pdf: [], tenant: hostile, to: notification)
        #expect(paid.subject.hasSuffix(": $320.68 paid") && !paid.textBody.contains("Amount due"), "\(paid.subject)")
        #expect(paid.textBody.contains("Amount paid"))
        // Finance's copy names who the invoice was issued to (its PDF's "Bill to"), not the
        // tenant as renamed since; the tenant's own copy greets it as it is called now.
        var renamed = invoice()
        renamed.billedTo = .init(name: "Old Name Ltd", email: "old-billing@example.com")
        let current = NotificationEmail.Recipient(name: "New Name GmbH", email: "new-billing@example.com")
        let finance = invoiceEmails(tenantEmail: current.email)
        let copy = email.invoice(renamed, pdf: [], tenant: current, to: finance[0])
        #expect(copy.subject.hasPrefix("[Finance copy] Invoice INV-2026-000777 for Old Name Ltd:"), "\(copy.subject)")
        #expect(copy.textBody.contains("issued to Old Name Ltd <old-billing@example.com>") && !copy.textBody.contains("New Name"))
        #expect(email.invoice(renamed, pdf: [], tenant: current, to: finance[1]).textBody.contains("Hello New Name GmbH"))
        // A name cannot turn the rest of a subject around or break its line.
        renamed.billedTo = .init(name: "Acme \u{202E}\u{2066}x\u{2028}y", email: "a@b.test")
        let turned = email.invoice(renamed, pdf: [], tenant: current, to: finance[0]).subject
        #expect(turned.hasPrefix("[Finance copy] Invoice INV-2026-000777 for Acme x y:"), "\(turned.unicodeScalars.map(\.value))")
    }

    @Test("a payment failure says what failed and what to do")
    func paymentFailedEmail() {
        let failed = BillingEvent.InvoicePaymentFailed(
            tenantID: tenant, occurredAt: end, invoiceID: UUID(), number: "INV-2026-000778", currency: "usd", amountDueCents: 32_068,
            attemptCount: 2, nextAttemptAt: end.addingTimeInterval(3 * 86_400), failureMessage: "Your card was declined.", stripeEventID: "evt_9")
        let notification = NotificationPlanner.plan(
            .invoicePaymentFailed(failed), tenantEmail: "ap@acme.test", financeEmail: "f@t.test", endpoints: [])[0]
        let message = NotificationEmail(sellerName: "Tally", sellerEmail: "billing@tally.test").paymentFailed(
            failed, tenant: .init(name: "Acme", email: "ap@acme.test"), to: notification)
        #expect(message.subject == "Payment failed for invoice INV-2026-000778 ($320.68)")
        #expect(message.textBody.contains("Your card was declined.") && message.textBody.contains("Dec 4, 2026"))
        #expect(message.textBody.contains("update the card on file"))
    }

    @Test("signatures match an HMAC computed elsewhere (Python's hmac), old and new secret both during a rotation")
    func signatures() {
        let value = WebhookSignature.value(body: Array(#"{"id":"evt_1"}"#.utf8), timestamp: 1_700_000_000, secrets: ["whsec_test", "whsec_old"])
        #expect(
            value == "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925,"
                + "v1=ef1b1b7e4b312671a75ef2a03e10529f7834a6528a49db77ad6568c8c8017843")
    }

    @Test("private, loopback, link-local and reserved addresses are refused, and URLs with spaces, line breaks or non-ASCII; public ones pass")
    func addresses() async throws {
        let policy = WebhookAddressPolicy(allowPrivate: false)
        for url in [
            "http://127.0.0.1/x", "http://10.0.0.1/x", "http://172.16.5.4/x", "http://192.168.1.1/x", "http://169.254.169.254/x",
            "http://100.64.0.1/x", "http://0.0.0.0/x", "http://[::1]/x", "http://[fe80::1]/x", "http://[fd00::1]/x",
            "http://[::ffff:127.0.0.1]/x", "http://[::10.0.0.1]/x", "http://[64:ff9b::a00:5]/x", "http://[2002:a00:1::]/x",
            "http://198.18.0.1/x", "http://localhost/x", "gopher://93.184.216.34/", "http://u:p@93.184.216.34/",
            // A port no connection can use (every delivery would fail and be parked).
            "http://93.184.216.34:0/x", "http://93.184.216.34:65536/x", "https://93.184.216.34:99999/x",
        ] {
            await #expect(throws: WebhookAddressPolicy.Refusal.self, "\(url)") { try await policy.check(url) }
        }
        // A new or changed endpoint's URL is printable ASCII besides.
        for url in [
            "https://93.184.216.34/\r\nX-Injected: 1", "https://93.184.216.34/a b", "https://93.184.216.34/\u{7F}", "https://93.184.216.34/é",
        ] {
            await #expect(throws: WebhookAddressPolicy.Refusal.self, "\(url)") { try await policy.checkNew(url) }
        }
        for port in ["0", "65536", "99999"] {
            do {
                _ = try await policy.checkNew("http://93.184.216.34:\(port)/x")
                Issue.record("port \(port) was taken")
            } catch {
                #expect(error.description.hasPrefix("has port \(port)"), "\(error)")
            }
        }
        #expect(try await policy.checkNew("https://93.184.216.34/hook?a=%20b").addresses == ["93.184.216.34"])
        let checked = try? await policy.check("https://93.184.216.34:8443/hook")
        #expect(checked?.addresses == ["93.184.216.34"] && checked?.pinned == [])
        // A name is pinned to what it resolved to when checked.
        let local = try await WebhookAddressPolicy(allowPrivate: true).check("http://localhost:9/x")
        #expect(local.pinned.count == 1 && local.pinned[0].hasPrefix("localhost:9:") && local.addresses.contains { $0 == "127.0.0.1" || $0 == "::1" })
        #expect(try await WebhookAddressPolicy(allowPrivate: true).check("http://127.0.0.1:9/x").addresses == ["127.0.0.1"])
        // An IPv6 literal is not pinned (nothing to look up); a public one passes.
        #expect(try await policy.check("http://[2606:4700::1111]/x").pinned == [])
        do {
            _ = try await policy.check("http://no-such-host.invalid/x")
            Issue.record("an unresolvable name passed")
        } catch {
            #expect(!error.isPermanent && error.description.contains("does not resolve"))
        }
    }
}
