import CurlClient
import Foundation
import Invoicing
import Logging
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing

@testable import StripeSync

/// Invoices pushed to Stripe by the running Invoicer, checked in localstripe (the Stripe
/// emulator `./ops/local.sh up` starts), and Stripe's signed webhooks — sent by
/// localstripe to the running billing API — applied back to our invoices,
/// subscriptions and payment methods.
@Suite("Invoicer: Stripe push and Stripe's webhooks, against localstripe")
struct StripePushTests {
    let stripe = LocalStripe()

    @Test(
        "an invoice is pushed once — customer, subscription, items with tax, invoice — and a push interrupted after Stripe created them finds them instead of creating them again"
    )
    func pushedOnceDespiteRetries() async throws {
        let fixture = try await InvoicingFixture.make()
        let billed = try await billedStripeTenant(fixture, taxBps: 725)
        let (tenant, email, start, subscription) = (billed.tenant, billed.email, billed.start, billed.subscription)
        let first = billed.invoice
        let stripeInvoice = try #require(first.stripe?.invoiceID)

        let customers = try await stripe.list("/v1/customers", ["email": email])
        try #require(customers.count == 1)
        let customer = try #require(customers[0]["id"] as? String)
        #expect((customers[0]["metadata"] as? [String: String])?["tally_tenant_id"] == tenant.uuidString.lowercased())
        let pushed = try await ourInvoices(customer: customer)
        try #require(pushed.count == 1)
        #expect(pushed[0]["id"] as? String == stripeInvoice)
        #expect(pushed[0]["total"] as? Int == Int(first.totalCents))  // 29,900 + 2,168 tax (7.25 %, half up)
        let lines = try await stripe.list("/v1/invoices/\(stripeInvoice)/lines", [:])
        #expect(lines.compactMap { $0["amount"] as? Int }.filter { $0 != 0 }.sorted() == [2_168, 29_900])
        #expect(first.totalCents == 32_068)

        // As if the Invoicer died after Stripe created everything but before our commit. The
        // invoice is made due last: the running Invoicer may push it at once, and it must find
        // the customer and subscription forgotten already (else the push records them and the
        // statements after it forget them again; the next push then made a second customer).
        try await fixture.database.query("UPDATE tenants SET stripe_customer_id = NULL WHERE id = $1", [tenant])
        try await fixture.database.query("UPDATE subscriptions SET stripe_subscription_id = NULL WHERE id = $1", [subscription])
        try await fixture.database.query(
            "UPDATE invoices SET stripe_status = 'pending', stripe_invoice_id = NULL, stripe_next_attempt_at = now() WHERE id = $1", [first.id])
        let again = try await syncedInvoice(of: tenant, fixture, attempts: 2)
        #expect(again.stripe?.invoiceID == stripeInvoice)
        #expect(try await stripe.list("/v1/customers", ["email": email]).count == 1)
        #expect(try await ourInvoices(customer: customer).count == 1)
        let subscriptions = try await stripe.list("/v1/subscriptions", ["customer": customer, "status": "all"])
        #expect(subscriptions.count == 1)

        // A pending item another invoice's interrupted push left must not end up on the next invoice.
        let leftover = try await stripe.post(
            "/v1/invoiceitems",
            [
                "customer": customer, "amount": "777", "currency": "usd", "metadata[tally_invoice_id]": UUID().uuidString.lowercased(),
                "metadata[tally_line]": "1",
            ])

        // The billing email changed since (PATCH /v1/tenants): the next push updates Stripe's customer.
        let moved = "moved-" + email
        try await fixture.database.query("UPDATE tenants SET billing_email = $2 WHERE id = $1", [tenant, moved])

        // The next period reuses the customer and the subscription: one more invoice, nothing else.
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        try await fixture.waitUntil("both invoices synced") {
            try await fixture.invoices(tenant).allSatisfy { $0.stripe?.status == "synced" }
        }
        let second = try #require(try await fixture.invoices(tenant).first)
        let secondPushed = try await stripe.send("GET", "/v1/invoices/\(try #require(second.stripe?.invoiceID))", [:])
        #expect(secondPushed["total"] as? Int == Int(second.totalCents))
        let pendingIDs = try await stripe.list("/v1/invoiceitems", ["customer": customer]).compactMap { $0["id"] as? String }
        #expect(!pendingIDs.contains(try #require(leftover["id"] as? String)))
        #expect(try await stripe.send("GET", "/v1/customers/\(customer)", [:])["email"] as? String == moved)
        #expect(try await stripe.list("/v1/customers", ["email": moved]).count == 1)
        #expect(try await ourInvoices(customer: customer).count == 2)
        #expect(try await stripe.list("/v1/subscriptions", ["customer": customer, "status": "all"]).count == 1)
        await fixture.close()
    }

    @Test(
        "signed webhooks from Stripe are applied: a payment marks the invoice paid, deleting the subscription ends ours, cards are kept as brand and last4"
    )
    func webhooksApplied() async throws {
        let fixture = try await InvoicingFixture.make()
        try await stripe.routeWebhooks()
        let billed = try await billedStripeTenant(fixture)
        let (tenant, start, subscription) = (billed.tenant, billed.start, billed.subscription)
        let invoice = billed.invoice
        let customer = try #require(
            try await fixture.database.query(
                "SELECT stripe_customer_id FROM tenants WHERE id = $1", [tenant])[0].text(0))

        // The customer adds a card in Stripe; the next push records what we may keep of it.
        let card = try await stripe.post(
            "/v1/payment_methods",
            ["type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123"])
        let cardID = try #require(card["id"] as? String)
        _ = try await stripe.post("/v1/payment_methods/\(cardID)/attach", ["customer": customer])
        _ = try await stripe.post("/v1/customers/\(customer)", ["invoice_settings[default_payment_method]": cardID])
        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        try await fixture.waitUntil("both invoices synced") {
            try await fixture.invoices(tenant).allSatisfy { $0.stripe?.status == "synced" }
        }
        let methods = try await fixture.database.query(
            "SELECT provider_id, brand, last4::text FROM payment_methods WHERE tenant_id = $1", [tenant])
        try #require(methods.count == 1)
        #expect(methods[0].text(0) == cardID)
        #expect(methods[0].text(1) == "visa")
        #expect(methods[0].text(2) == "4242")

        // Paid in Stripe: localstripe signs `invoice.payment_succeeded` and posts it to the billing API.
        _ = try await stripe.post("/v1/invoices/\(try #require(invoice.stripe?.invoiceID))/pay", [:])
        try await fixture.waitUntil("the invoice is paid") {
            try await fixture.invoices(tenant).first { $0.id == invoice.id }?.status == "paid"
        }
        let received = try await fixture.database.query(
            "SELECT count(*) FROM stripe_webhook_events WHERE type = 'invoice.payment_succeeded' AND payload #>> '{data,object,customer}' = $1",
            [customer])
        #expect(try received[0].decode(0, as: Int.self) == 1)

        // Canceled in Stripe: `customer.subscription.deleted` ends ours, not inside the invoiced periods.
        let stripeSubscription = try #require(
            try await fixture.database.query(
                "SELECT stripe_subscription_id FROM subscriptions WHERE id = $1", [subscription])[0].text(0))
        _ = try await stripe.send("DELETE", "/v1/subscriptions/\(stripeSubscription)", [:])
        try await fixture.waitUntil("the subscription ends") {
            try await fixture.database.query("SELECT ends_at IS NOT NULL FROM subscriptions WHERE id = $1", [subscription])[0]
                .decode(0, as: Bool.self)
        }
        let endsAt = try await fixture.database.query("SELECT ends_at FROM subscriptions WHERE id = $1", [subscription])[0]
            .decode(0, as: Date.self)
        #expect(endsAt >= adding(months: 2, to: start))
        await fixture.close()
    }

    @Test("a customer deleted in Stripe is created again at the next push (with a new subscription); the invoice is synced")
    func deletedCustomerRecreated() async throws {
        let fixture = try await InvoicingFixture.make()
        let billed = try await billedStripeTenant(fixture)
        let (tenant, start) = (billed.tenant, billed.start)
        let deleted = try #require(try await fixture.database.query("SELECT stripe_customer_id FROM tenants WHERE id = $1", [tenant])[0].text(0))
        // Removed in Stripe's dashboard (or the emulator restarted without it).
        _ = try await stripe.send("DELETE", "/v1/customers/\(deleted)", [:])

        try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
        try await fixture.waitUntil("the second invoice synced or failed") {
            let states = try await fixture.invoices(tenant).compactMap(\.stripe?.status)
            return states.count == 2 && !states.contains("pending")
        }
        let second = try #require(try await fixture.invoices(tenant).first)
        #expect(second.stripe?.status == "synced", "\(second.stripe?.error ?? "")")
        #expect(second.stripe?.attempts == 1)
        let recreated = try #require(try await fixture.database.query("SELECT stripe_customer_id FROM tenants WHERE id = $1", [tenant])[0].text(0))
        #expect(recreated != deleted)
        #expect(try await ourInvoices(customer: recreated).count == 1)
        #expect(try await stripe.list("/v1/subscriptions", ["customer": recreated, "status": "all"]).count == 1)
        await fixture.close()
    }

    @Test("a Stripe event that cannot be applied is set aside with its reason and listed; the events after it are applied")
    func failingEventSetAside() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 70)
        try await fixture.subscribe(tenant, plan: "starter", start: start)
        try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        let bad = "evt_bad_\(UUID().uuidString.prefix(8))"
        let good = "evt_good_\(UUID().uuidString.prefix(8))"
        // Stored as the billing API stores verified events: one whose attempt count is not a number, then a payment.
        try await fixture.database.query(
            """
            INSERT INTO stripe_webhook_events (event_id, type, payload, received_at) VALUES
              ($1, 'invoice.payment_failed', jsonb_build_object('data', jsonb_build_object('object',
                  jsonb_build_object('id', 'in_x', 'attempt_count', 'lots', 'metadata', jsonb_build_object('tally_invoice_id', $3::text)))),
               now() - interval '1 second'),
              ($2, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object',
                  jsonb_build_object('id', 'in_y', 'metadata', jsonb_build_object('tally_invoice_id', $3::text)))), now())
            """, [bad, good, invoice.id.uuidString.lowercased()])
        try await withCleanup {
            try await fixture.waitUntil("the payment after the failing event applied") {
                try await fixture.invoices(tenant).first?.status == "paid"
            }
            let failed = try await fixture.database.query(
                "SELECT failed_at IS NOT NULL, error, processed_at IS NULL FROM stripe_webhook_events WHERE event_id = $1", [bad])[0]
            #expect(try failed.decode(0, as: Bool.self))
            #expect(failed.text(1)?.contains("lots") == true, "\(failed.text(1) ?? "")")
            #expect(try failed.decode(2, as: Bool.self))
            let environment = ["DATABASE_URL": TestEnvironment.databaseURL, "AMQP_URL": TestEnvironment.amqpURL]
            let listed = try await TestEnvironment.run(InvoicingFixture.binary, ["stripe", "list"], environment: environment)
            #expect(listed.output.contains("event \(bad)  invoice.payment_failed"), "\(listed.output)")
        } cleanup: {
            try await fixture.database.query("DELETE FROM stripe_webhook_events WHERE event_id IN ($1, $2)", [bad, good])
            await fixture.close()
        }
    }

    @Test(
        "Stripe's subscription events: a deletion ends ours when Stripe ended it, even one set to end at its period end; a scheduled end run out ends ours at our period end; an end at period end after a period billed ahead ends at that period's end"
    )
    func subscriptionEndsAsStripeSays() async throws {
        let fixture = try await InvoicingFixture.make()
        let start = midnight(daysAgo: 70)
        let run = UUID().uuidString.prefix(8)
        // One billed for its first period, then set to end at its period end by Stripe, then deleted in Stripe an hour ago.
        let first = try await fixture.tenant()
        let firstSubscription = try await fixture.subscribe(first, plan: "starter", start: start)
        try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [first])
        // One billed three periods ahead (an admin's future as_of), then set to end at its period end.
        let second = try await fixture.tenant()
        let secondSubscription = try await fixture.subscribe(second, plan: "starter", start: start)
        let billedUntil = adding(months: 3, to: start)
        try await fixture.bill(asOf: billedUntil.addingTimeInterval(7200), tenants: [second])
        // Three Stripe ended where it was set to end, its monthly mirror's period end an hour
        // ago (ours are anchored elsewhere): one whose scheduled end we applied, one whose
        // scheduled end we never heard of (API versions from 2025-03-31 give the period's end
        // on the subscription's items), one ours was set to end months later (by an operator).
        let third = try await fixture.tenant()
        let thirdSubscription = try await fixture.subscribe(third, plan: "starter", start: start)
        let fourth = try await fixture.tenant()
        let fourthSubscription = try await fixture.subscribe(fourth, plan: "starter", start: start)
        let fifth = try await fixture.tenant()
        let fifthSubscription = try await fixture.subscribe(fifth, plan: "starter", start: start, endsAt: adding(months: 6, to: start))
        let (firstStripe, secondStripe) = ("sub_first_\(run)", "sub_second_\(run)")
        let (thirdStripe, fourthStripe, fifthStripe) = ("sub_third_\(run)", "sub_fourth_\(run)", "sub_fifth_\(run)")
        for (subscription, stripe) in [
            (firstSubscription, firstStripe), (secondSubscription, secondStripe), (thirdSubscription, thirdStripe),
            (fourthSubscription, fourthStripe), (fifthSubscription, fifthStripe),
        ] {
            try await fixture.database.query("UPDATE subscriptions SET stripe_subscription_id = $2 WHERE id = $1", [subscription, stripe])
        }
        let endedAt = Int64(TestClock.now().timeIntervalSince1970) - 3600
        let events = [
            "evt_sched_\(run)", "evt_del_\(run)", "evt_ahead_\(run)", "evt_sched3_\(run)", "evt_ranout3_\(run)", "evt_ranout4_\(run)",
            "evt_ranout5_\(run)",
        ]
        // The first's deletion is outright, as Stripe sends it from 2025-03-31 on: the flag
        // still set, no period end on the subscription.
        try await fixture.database.query(
            """
            INSERT INTO stripe_webhook_events (event_id, type, payload, received_at) VALUES
              ($1, 'customer.subscription.updated', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $8::text, 'status', 'active', 'cancel_at_period_end', true))), now() - interval '6 seconds'),
              ($2, 'customer.subscription.deleted', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $8::text, 'status', 'canceled', 'cancel_at_period_end', true, 'ended_at', $13::bigint, 'canceled_at', $13::bigint))),
               now() - interval '5 seconds'),
              ($3, 'customer.subscription.updated', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $9::text, 'status', 'active', 'cancel_at_period_end', true))), now() - interval '4 seconds'),
              ($4, 'customer.subscription.updated', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $10::text, 'status', 'active', 'cancel_at_period_end', true))), now() - interval '3 seconds'),
              ($5, 'customer.subscription.deleted', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $10::text, 'status', 'canceled', 'cancel_at_period_end', true, 'current_period_end', $13::bigint,
                  'ended_at', $13::bigint, 'canceled_at', $13::bigint - 86400))), now() - interval '2 seconds'),
              ($6, 'customer.subscription.deleted', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $11::text, 'status', 'canceled', 'cancel_at_period_end', true,
                  'items', jsonb_build_object('data', jsonb_build_array(jsonb_build_object('current_period_end', $13::bigint))),
                  'ended_at', $13::bigint, 'canceled_at', $13::bigint - 86400))), now() - interval '1 second'),
              ($7, 'customer.subscription.deleted', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                  'id', $12::text, 'status', 'canceled', 'cancel_at_period_end', true, 'cancel_at', $13::bigint,
                  'ended_at', $13::bigint, 'canceled_at', $13::bigint - 86400))), now())
            """,
            [
                events[0], events[1], events[2], events[3], events[4], events[5], events[6], firstStripe, secondStripe, thirdStripe,
                fourthStripe, fifthStripe, endedAt,
            ])
        try await withCleanup {
            try await fixture.waitUntil("the seven events applied") {
                try await fixture.database.query(
                    "SELECT count(*) FROM stripe_webhook_events WHERE event_id = ANY($1::text[]) AND processed_at IS NOT NULL",
                    [PostgresTextArray(events)])[0].decode(0, as: Int.self) == 7
            }
            func endsAt(_ subscription: UUID) async throws -> Date? {
                try await fixture.database.query("SELECT ends_at FROM subscriptions WHERE id = $1", [subscription])[0].decode(0, as: Date?.self)
            }
            // Ended when Stripe ended it (it ran to its period end, or ended when the event was applied).
            #expect(try await endsAt(firstSubscription) == Date(timeIntervalSince1970: TimeInterval(endedAt)))
            // At the end of the last period billed (it ran one period past it).
            #expect(try await endsAt(secondSubscription) == billedUntil)
            // All three at the end of our period containing now (Stripe's mirror's end cut them short; the fifth's ran months on).
            let ourPeriodEnd = adding(months: 3, to: start)
            #expect(try await endsAt(thirdSubscription) == ourPeriodEnd)
            #expect(try await endsAt(fourthSubscription) == ourPeriodEnd)
            #expect(try await endsAt(fifthSubscription) == ourPeriodEnd)
        } cleanup: {
            try await fixture.database.query("DELETE FROM stripe_webhook_events WHERE event_id = ANY($1::text[])", [PostgresTextArray(events)])
            await fixture.close()
        }
    }

    @Test(
        "a payment is applied only for the invoice's whole amount, in its currency, from its tenant's customer; a failure email carries our total, not Stripe's figure"
    )
    func paymentsChecked() async throws {
        let fixture = try await InvoicingFixture.make()
        let tenant = try await fixture.tenant()
        let start = midnight(daysAgo: 70)
        try await fixture.subscribe(tenant, plan: "starter", start: start)
        try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [tenant])
        let invoice = try #require(try await fixture.invoices(tenant).first)
        let ours = invoice.id.uuidString.lowercased()
        let run = UUID().uuidString.prefix(8)
        let (tooLittle, otherCustomer, failure, paid) = ("evt_little_\(run)", "evt_other_\(run)", "evt_fail_\(run)", "evt_paid_\(run)")
        let (otherTotal, stillDue, credited, short) = ("evt_total_\(run)", "evt_due_\(run)", "evt_credit_\(run)", "evt_short_\(run)")
        let outOfBand = "evt_wire_\(run)"
        let events = [tooLittle, otherCustomer, otherTotal, stillDue, credited, short, failure, paid, outOfBand]
        try await withCleanup {
            // The tenant's Stripe customer is known. As the billing API stores verified
            // events, oldest first: 1 JPY "paying" it; another customer's invoice naming
            // ours; an invoice of another total; one with an amount still due; one a credit
            // note issued in Stripe lowered before payment; one saying only that 1 USD cent
            // was paid; a failure with Stripe's amount in another unit.
            try await fixture.database.query("UPDATE tenants SET stripe_customer_id = $2 WHERE id = $1", [tenant, "cus_ours_\(run)"])
            try await fixture.database.query(
                """
                INSERT INTO stripe_webhook_events (event_id, type, payload, received_at) VALUES
                  ($1, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_little', 'amount_paid', 1, 'currency', 'jpy', 'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now() - interval '7 seconds'),
                  ($2, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_other', 'customer', 'cus_someone_else', 'amount_paid', $9::bigint, 'currency', 'usd',
                      'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now() - interval '6 seconds'),
                  ($3, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_total', 'total', $9::bigint + 100, 'amount_paid', $9::bigint + 100, 'amount_remaining', 0, 'currency', 'USD',
                      'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now() - interval '5 seconds'),
                  ($4, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_due', 'total', $9::bigint, 'amount_paid', 1, 'amount_remaining', $9::bigint - 1, 'currency', 'usd',
                      'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now() - interval '4 seconds'),
                  ($5, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_credit', 'total', $9::bigint, 'pre_payment_credit_notes_amount', 100, 'amount_due', $9::bigint - 100,
                      'amount_paid', $9::bigint - 100, 'amount_remaining', 0, 'starting_balance', 0, 'ending_balance', 0, 'currency', 'usd',
                      'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now() - interval '3 seconds'),
                  ($6, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_short', 'amount_paid', 1, 'currency', 'usd', 'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now() - interval '2 seconds'),
                  ($7, 'invoice.payment_failed', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_fail', 'amount_due', 500000, 'currency', 'usd', 'metadata', jsonb_build_object('tally_invoice_id', $8::text)))),
                   now())
                """, [tooLittle, otherCustomer, otherTotal, stillDue, credited, short, failure, ours, invoice.totalCents])
            try await fixture.waitUntil("the seven events applied or set aside") {
                try await fixture.database.query(
                    "SELECT count(*) FROM stripe_webhook_events WHERE event_id = ANY($1::text[]) AND (processed_at IS NOT NULL OR failed_at IS NOT NULL)",
                    [PostgresTextArray(events)])[0].decode(0, as: Int.self) == 7
            }
            #expect(try await fixture.invoices(tenant).first?.status == "open")
            for (event, says) in [
                (tooLittle, "paid in JPY"), (otherCustomer, "another customer"), (otherTotal, "totals \(invoice.totalCents + 100) in Stripe's unit"),
                (stillDue, "\(invoice.totalCents - 1) in its unit of USD still due"), (credited, "credited 100 in its unit of USD"),
                (short, "Stripe reports 1 paid"),
            ] {
                let row = try await fixture.database.query(
                    "SELECT failed_at IS NOT NULL, coalesce(error, '') FROM stripe_webhook_events WHERE event_id = $1", [event])[0]
                #expect(try row.decode(0, as: Bool.self), "\(event)")
                #expect(row.text(1)?.contains(says) == true, "\(event): \(row.text(1) ?? "")")
            }
            let failed = try await fixture.database.query(
                "SELECT body ->> 'amount_due_cents' FROM outbox WHERE routing_key = 'invoice.payment_failed' AND body::text LIKE $1",
                ["%\(failure)%"])
            #expect(failed.count == 1)
            #expect(failed.first?.text(0) == "\(invoice.totalCents)", "\(failed.first?.text(0) ?? "")")

            // The payment, as Stripe may send it while the first push of the tenant is not
            // committed (no customer recorded yet), made wholly from the customer's credit
            // balance (nothing charged: amount_paid 0): it pays ours.
            try await fixture.database.query("UPDATE tenants SET stripe_customer_id = NULL WHERE id = $1", [tenant])
            try await fixture.database.query(
                """
                INSERT INTO stripe_webhook_events (event_id, type, payload, received_at) VALUES
                  ($1, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_paid', 'customer', 'cus_new', 'total', $3::bigint, 'starting_balance', -$3::bigint, 'ending_balance', 0,
                      'amount_due', 0, 'amount_paid', 0, 'amount_remaining', 0, 'currency', 'USD', 'metadata', jsonb_build_object('tally_invoice_id', $2::text)))),
                   now())
                """, [paid, ours, invoice.totalCents])
            try await fixture.waitUntil("the payment applied") { try await fixture.invoices(tenant).first?.status == "paid" }

            // The next period's invoice marked paid in Stripe by finance, who received a wire:
            // nothing charged, no balance moved (as Stripe's API versions before 2025-03-31
            // report it), paid out of band — paid.
            try await fixture.bill(asOf: adding(months: 2, to: start).addingTimeInterval(7200), tenants: [tenant])
            let next = try #require(try await fixture.invoices(tenant).first { $0.id != invoice.id })
            try await fixture.database.query(
                """
                INSERT INTO stripe_webhook_events (event_id, type, payload, received_at) VALUES
                  ($1, 'invoice.paid', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', 'in_wire', 'total', $3::bigint, 'amount_due', $3::bigint, 'amount_paid', 0, 'amount_remaining', 0,
                      'starting_balance', 0, 'ending_balance', 0, 'paid_out_of_band', true, 'currency', 'usd',
                      'metadata', jsonb_build_object('tally_invoice_id', $2::text)))),
                   now())
                """, [outOfBand, next.id.uuidString.lowercased(), next.totalCents])
            try await fixture.waitUntil("the payment out of band applied") {
                try await fixture.invoices(tenant).first { $0.id == next.id }?.status == "paid"
            }
        } cleanup: {
            try await fixture.database.query("DELETE FROM stripe_webhook_events WHERE event_id = ANY($1::text[])", [PostgresTextArray(events)])
            await fixture.close()
        }
    }

    @Test(
        "a push that fails is retried with its error recorded; a failed one is listed and made due again by `invoicer stripe retry`, and finds its Stripe invoice"
    )
    func failureAndRetry() async throws {
        let fixture = try await InvoicingFixture.make()
        let billed = try await billedStripeTenant(fixture)
        let (tenant, email) = (billed.tenant, billed.email)
        let invoice = billed.invoice
        let stripeInvoice = try #require(invoice.stripe?.invoiceID)
        let retryingSeries = #"tally_invoicer_stripe_pushes_total{outcome="retrying"}"#
        let retryingBefore = try #require(try await fixture.invoicerMetrics()[retryingSeries])

        // A Stripe invoice id that Stripe does not know: 404, retried later, the error kept.
        try await fixture.database.query(
            "UPDATE invoices SET stripe_status = 'pending', stripe_invoice_id = $2, stripe_next_attempt_at = now() WHERE id = $1",
            [invoice.id, "in_missing\(UUID().uuidString.prefix(8))"])
        try await fixture.waitUntil("the failed attempt is recorded") {
            try await fixture.invoices(tenant).first?.stripe?.attempts == 2
        }
        let retrying = try #require(try await fixture.invoices(tenant).first?.stripe)
        #expect(retrying.status == "pending")
        #expect(retrying.error?.contains("404") == true)
        // The running Invoicer counts the attempt in /metrics (other tests' failures may add to it).
        try await fixture.waitUntil("the failed push counted") {
            try await fixture.invoicerMetrics()[retryingSeries] ?? 0 > retryingBefore
        }

        // Out of attempts: `failed` until an operator retries it.
        try await fixture.database.query(
            "UPDATE invoices SET stripe_status = 'failed', stripe_invoice_id = NULL WHERE id = $1", [invoice.id])
        #expect(try await fixture.invoicerMetrics()[#"tally_stripe_invoices{status="failed"}"#] ?? 0 >= 1)
        let environment = ["DATABASE_URL": TestEnvironment.databaseURL, "AMQP_URL": TestEnvironment.amqpURL]
        let listed = try await TestEnvironment.run(InvoicingFixture.binary, ["stripe", "list", "--failed"], environment: environment)
        #expect(listed.status == 0)
        #expect(listed.output.contains(invoice.number))
        let retried = try await TestEnvironment.run(
            InvoicingFixture.binary, ["stripe", "retry", "--invoice", invoice.number], environment: environment)
        #expect(retried.output.contains("1 invoice(s) due for Stripe again"), "\(retried.output)\(retried.errors)")
        try await fixture.waitUntil("the invoice is in Stripe again") {
            try await fixture.invoices(tenant).first?.stripe?.status == "synced"
        }
        #expect(try await fixture.invoices(tenant).first?.stripe?.invoiceID == stripeInvoice)
        let customer = try #require(try await stripe.list("/v1/customers", ["email": email]).first?["id"] as? String)
        #expect(try await ourInvoices(customer: customer).count == 1)
        await fixture.close()
    }

    @Test("form encoding as Stripe reads it (nested keys, reserved and non-ASCII characters percent-encoded); which errors are worth retrying")
    func formEncoding() {
        #expect(
            StripeAPI.formEncode([("metadata[tally_invoice_id]", "a b&c"), ("description", "Tax 7.25% — café")])
                == "metadata%5Btally_invoice_id%5D=a%20b%26c&description=Tax%207.25%25%20%E2%80%94%20caf%C3%A9")
        func error(_ status: Int, _ type: String? = nil) -> StripeAPIError {
            StripeAPIError(status: status, type: type, code: nil, message: "", method: "POST", path: "/v1/invoices", isUnknownRoute: false)
        }
        // Retrying helps after an outage, a rate limit, a conflict or a missing object; not after a refusal.
        #expect([0, 404, 409, 429, 500, 503].map { StripeSync.isPermanent(error($0)) } == [false, false, false, false, false, false])
        #expect(StripeSync.isPermanent(error(400)))
        #expect(StripeSync.isPermanent(error(402)))
        #expect(StripeSync.isPermanent(error(200, "tally_total_mismatch")))
        #expect(StripeSync.isPermanent(error(0, "tally_currency_unit")))
    }

    @Test("amounts in Stripe's unit: ISO's minor unit, except ISK (two-decimal in Stripe), MGA (zero) and tens of fils; refused, never rounded")
    func stripeUnits() throws {
        func stripe(_ amount: Int64, _ currency: String) -> Int64? { try? StripeAmounts.stripeAmount(amount, currency: currency, what: "line 1") }
        #expect(stripe(12_345, "usd") == 12_345)
        #expect(stripe(500, "jpy") == 500)
        // ISK 12,345 (no minor unit in ISO 4217): Stripe reads 1,234,500 as 12,345 krónur (it read 123.45).
        #expect(stripe(12_345, "isk") == 1_234_500)
        // MGA in hundredths for Tally, whole ariary for Stripe (it read 100 times the amount).
        #expect(stripe(1_234_500, "mga") == 12_345)
        #expect(stripe(1_234_550, "mga") == nil)
        #expect(stripe(-1_200, "mga") == -12)
        // KWD: fils, in tens.
        #expect(stripe(12_340, "kwd") == 12_340)
        #expect(stripe(12_345, "kwd") == nil)
        #expect(stripe(.max, "isk") == nil)
        do {
            _ = try StripeAmounts.stripeAmount(12_345, currency: "kwd", what: "line 2")
            Issue.record("KWD 12.345 was taken")
        } catch {
            #expect("\(error)".contains("line 2 of KWD 12.345 is not a multiple of 10"), "\(error)")
        }
    }

    @Test(
        "through the running Invoicer and localstripe: an ISK invoice reaches Stripe in its hundredths; a KWD one not in tens of fils fails for good, naming the line, with nothing created"
    )
    func stripeUnitsPushed() async throws {
        let fixture = try await InvoicingFixture.make()
        let start = midnight(daysAgo: 70)
        var invoices: [String: InvoiceView] = [:]
        for currency in ["isk", "kwd"] {
            let code = "test-stripe-\(currency)-\(UUID().uuidString.prefix(8).lowercased())"
            _ = try await CatalogStore(pool: fixture.database).create(
                StoredPlanVersion(
                    code: code, version: 0, name: "In \(currency)", currency: currency, interval: "month", baseCents: 12_345, trialDays: 0,
                    charges: []))
            let tenant = try await fixture.tenant(paymentProvider: "stripe", email: "ap-\(UUID().uuidString.prefix(8).lowercased())@stripe.test")
            _ = try await SubscriptionStore(pool: fixture.database).create(
                tenant: tenant, plan: code, start: start, trialDays: nil, grant: .byOperator, now: start)
            try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [tenant])
            try await fixture.waitUntil("the \(currency) invoice pushed or failed for good") {
                let state = try await fixture.invoices(tenant).last?.stripe
                return state?.status == "synced" || state?.status == "failed"
            }
            invoices[currency] = try #require(try await fixture.invoices(tenant).last)
        }
        // ISK 12,345 (ISO 4217: no minor unit) is 1,234,500 in Stripe's hundredths; it reached Stripe as 12,345 = ISK 123.45.
        let isk = try #require(invoices["isk"])
        #expect(isk.totalCents == 12_345 && isk.stripe?.status == "synced", "\(String(describing: isk.stripe))")
        let pushed = try await stripe.send("GET", "/v1/invoices/\(try #require(isk.stripe?.invoiceID))", [:])
        #expect(pushed["total"] as? Int == 1_234_500)
        // KWD 12.345: Stripe takes fils only in tens; refused before anything is created, never rounded.
        let kwd = try #require(invoices["kwd"])
        #expect(kwd.stripe?.status == "failed" && kwd.stripe?.invoiceID == nil, "\(String(describing: kwd.stripe))")
        #expect(kwd.stripe?.error?.contains("line 1 of KWD 12.345 is not a multiple of 10") == true, "\(String(describing: kwd.stripe))")
        await fixture.close()
    }

    /// The tenant's one invoice once synced (after `attempts` pushes in all).
    /// A `stripe` tenant on starter from midnight 70 days ago, its first period billed and
    /// pushed to Stripe.
    private func billedStripeTenant(_ fixture: InvoicingFixture, taxBps: Int = 0) async throws
        -> (email: String, tenant: UUID, start: Date, subscription: UUID, invoice: InvoiceView)
    {
        let email = "ap-\(UUID().uuidString.prefix(8).lowercased())@stripe.test"
        let tenant = try await fixture.tenant(taxBps: taxBps, paymentProvider: "stripe", email: email)
        let start = midnight(daysAgo: 70)
        let subscription = try await fixture.subscribe(tenant, plan: "starter", start: start)
        try await fixture.bill(asOf: adding(months: 1, to: start).addingTimeInterval(7200), tenants: [tenant])
        return (email, tenant, start, subscription, try await syncedInvoice(of: tenant, fixture))
    }

    private func syncedInvoice(of tenant: UUID, _ fixture: InvoicingFixture, attempts: Int = 1) async throws -> InvoiceView {
        try await fixture.waitUntil("the invoice is in Stripe") {
            guard let state = try await fixture.invoices(tenant).last?.stripe else { return false }
            #expect(state.status != "failed", "Stripe push failed: \(state.error ?? "")")
            return state.status == "synced" && state.attempts == attempts || state.status == "failed"
        }
        let invoice = try #require(try await fixture.invoices(tenant).last)
        #expect(invoice.stripe?.status == "synced")
        return invoice
    }

    /// The customer's Stripe invoices that carry one of ours (not the $0 one Stripe issues
    /// when the subscription starts).
    private func ourInvoices(customer: String) async throws -> [[String: Any]] {
        try await stripe.list("/v1/invoices", ["customer": customer]).filter { ($0["description"] as? String)?.hasPrefix("Tally invoice ") == true }
    }
}

/// Holds a tenant's usage lock (class 13) while the Invoicer queues behind it: every
/// batch storing usage of that lock's tenants waits meanwhile, and a statement taking
/// every lock (the 20,000-tenant test's subscriptions) stalls the whole parallel phase
/// behind it. Run in the serial phase (its name matches `SerialTests`).
@Suite("Invoicer: Stripe events and usage locks SerialTests", .enabled(if: TestEnvironment.disruptive))
struct StripeEventLockSerialTests {
    @Test(
        "Stripe events ending two tenants' subscriptions, while another transaction takes both tenants' usage locks in order: no deadlock, none set aside"
    )
    func eventsAppliedOneTransactionEach() async throws {
        let fixture = try await InvoicingFixture.make()
        let start = midnight(daysAgo: 70)
        let run = UUID().uuidString.prefix(8)
        func bucket(_ tenant: UUID) async throws -> Int {
            try await fixture.database.query("SELECT (hashtextextended($1::text, 13) & 511)::int", [tenant.uuidString.lowercased()])[0].decode(
                0, as: Int.self)
        }
        // Two tenants whose usage locks are two buckets (migration 023), the first's lower:
        // the other transaction takes them in order, as every statement taking several does.
        var pair = (try await fixture.tenant(), try await fixture.tenant())
        while try await bucket(pair.0) == bucket(pair.1) { pair.1 = try await fixture.tenant() }
        let (first, second) = try await bucket(pair.0) < bucket(pair.1) ? pair : (pair.1, pair.0)
        let firstSubscription = try await fixture.subscribe(first, plan: "starter", start: start)
        let secondSubscription = try await fixture.subscribe(second, plan: "starter", start: start)
        let (firstStripe, secondStripe) = ("sub_a_\(run)", "sub_b_\(run)")
        try await fixture.database.query("UPDATE subscriptions SET stripe_subscription_id = $2 WHERE id = $1", [firstSubscription, firstStripe])
        try await fixture.database.query("UPDATE subscriptions SET stripe_subscription_id = $2 WHERE id = $1", [secondSubscription, secondStripe])
        let (firstBucket, secondBucket) = (try await bucket(first), try await bucket(second))
        let events = ["evt_end_b_\(run)", "evt_end_a_\(run)"]
        let holder = try await PostgresConnection.connect(
            configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), logger: Logger(label: "test.stripe"))
        try await withCleanup {
            // Another transaction (as a plan migration does) holds the first tenant's lock.
            try await holder.query("BEGIN")
            try await holder.query("SELECT pg_advisory_xact_lock(13, $1)", [firstBucket])
            // Stripe ends the second's subscription, then the first's.
            try await fixture.database.query(
                """
                INSERT INTO stripe_webhook_events (event_id, type, payload, received_at) VALUES
                  ($1, 'customer.subscription.deleted', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', $3::text, 'status', 'canceled'))), now() - interval '1 second'),
                  ($2, 'customer.subscription.deleted', jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object(
                      'id', $4::text, 'status', 'canceled'))), now())
                """, [events[0], events[1], secondStripe, firstStripe])
            // The Invoicer reaches the first's event and waits for its lock...
            try await fixture.waitUntil("the Invoicer waiting for the first tenant's usage lock") {
                try await fixture.database.query(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 13 AND objid = $1 AND objsubid = 2 AND NOT granted",
                    [firstBucket])[0].decode(0, as: Int.self) > 0
            }
            // ...having committed the second's event on its own (in one transaction with the
            // first's, it never commits while that waits)...
            try await fixture.waitUntil("the second tenant's event committed") {
                try await fixture.database.query("SELECT processed_at IS NOT NULL FROM stripe_webhook_events WHERE event_id = $1", [events[0]])
                    .first?.decode(0, as: Bool.self) == true
            }
            // ...so the other transaction takes the second's lock: granted. (In one transaction,
            // one of the two was a deadlock's victim: this one, or the event, set aside as failed.)
            try await holder.query("SELECT pg_advisory_xact_lock(13, $1)", [secondBucket])
            try await holder.query("COMMIT")
            try await fixture.waitUntil("both events applied") {
                try await fixture.database.query(
                    "SELECT count(*) FROM stripe_webhook_events WHERE event_id = ANY($1::text[]) AND (processed_at IS NOT NULL OR failed_at IS NOT NULL)",
                    [PostgresTextArray(events)])[0].decode(0, as: Int.self) == 2
            }
            let failed = try await fixture.database.query(
                "SELECT event_id, error FROM stripe_webhook_events WHERE event_id = ANY($1::text[]) AND failed_at IS NOT NULL",
                [PostgresTextArray(events)])
            #expect(failed.isEmpty, "\(failed.map { "\($0.text(0) ?? ""): \($0.text(1) ?? "")" })")
            let ended = try await fixture.database.query(
                "SELECT count(*) FROM subscriptions WHERE id = ANY($1::uuid[]) AND ends_at IS NOT NULL",
                [PostgresTextArray([firstSubscription.uuidString.lowercased(), secondSubscription.uuidString.lowercased()])])[0].decode(
                    0, as: Int.self)
            #expect(ended == 2)
        } cleanup: {
            _ = try? await holder.query("ROLLBACK")
            await holder.close()
            try await fixture.database.query("DELETE FROM stripe_webhook_events WHERE event_id = ANY($1::text[])", [PostgresTextArray(events)])
            await fixture.close()
        }
    }
}

/// Plain calls to localstripe, as a Stripe dashboard user or Stripe.js would make them.
struct LocalStripe: Sendable {
    let base = TestEnvironment.stripeAPIBase
    let key = TestEnvironment.stripeAPIKey

    func send(_ method: String, _ path: String, _ form: [String: String]) async throws -> [String: Any] {
        let client = try HTTPClient()
        let encoded = StripeAPI.formEncode(form.sorted { $0.key < $1.key })
        let isBodyless = method == "GET"
        let response = try await client.send(
            .init(
                method: .init(rawValue: method), url: base + path + (isBodyless && !encoded.isEmpty ? "?" + encoded : ""),
                headers: ["Authorization": "Bearer \(key)", "Content-Type": "application/x-www-form-urlencoded"],
                body: isBodyless ? nil : Data(encoded.utf8)))
        try #require(response.isSuccess, "localstripe \(method) \(path): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        return (try JSONSerialization.jsonObject(with: response.body) as? [String: Any]) ?? [:]
    }

    func post(_ path: String, _ form: [String: String]) async throws -> [String: Any] { try await send("POST", path, form) }

    func list(_ path: String, _ query: [String: String]) async throws -> [[String: Any]] {
        (try await send("GET", path, query.merging(["limit": "100"]) { a, _ in a })["data"] as? [[String: Any]]) ?? []
    }

    /// Tells localstripe to sign its events with the billing API's secret and post them there.
    func routeWebhooks() async throws {
        let client = try HTTPClient()
        let form = StripeAPI.formEncode([
            ("url", TestEnvironment.apiURL + "/v1/stripe/webhook"), ("secret", TestEnvironment.stripeWebhookSecret),
        ])
        let response = try await client.send(
            .init(
                method: .post, url: base + "/_config/webhooks/tally-billing-api",
                headers: ["Content-Type": "application/x-www-form-urlencoded"], body: Data(form.utf8)))
        try #require(response.isSuccess, "localstripe webhook config: \(response.status)")
    }
}
