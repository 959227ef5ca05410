import Foundation
import Invoicing
import PostgresClient
import Synchronization
import TallyTestSupport
import Testing

/// Exactly one invoice per period and gapless numbers with many Invoicer processes,
/// one of them SIGKILLed in the middle of the run.
/// Heavy (5,000 invoices, 4 processes): run in the serial phase.
@Suite("Invoicer: concurrent processes SerialTests", .enabled(if: TestEnvironment.disruptive))
struct ConcurrentInvoicerSerialTests {
    func startInvoicer(_ name: String, log: String) throws -> ChildProcess {
        try ChildProcess(
            InvoicingFixture.binary, ["run"],
            environment: [
                "AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL, "LOG_FORMAT": "text",
                "LOG_LEVEL": "warning", "INVOICER_CONSUMERS": "2", "INVOICER_PORT": "0",
            ],
            log: log + "-\(name).log")
    }

    @Test("4 invoicers over 5,000 due subscriptions, one SIGKILLed mid-run, billing run again: one invoice each, numbers gapless")
    func fiveThousand() async throws {
        let fixture = try await InvoicingFixture.make()
        let tag = String(UUID().uuidString.prefix(8)).lowercased()
        let day: TimeInterval = 86_400
        let start = Date(timeIntervalSince1970: ((TestClock.now().timeIntervalSince1970 - 45 * day) / day).rounded(.down) * day)
        let subscriptions = try await fixture.database.query(
            """
            WITH t AS (
                INSERT INTO tenants (name, billing_email) SELECT 'bulk ' || $1 || ' ' || g, 'bulk@invoicer.test' FROM generate_series(1, 5000) g
                RETURNING id
            ), s AS (
                INSERT INTO subscriptions (tenant_id, started_at, anchor) SELECT id, $2, $2 FROM t RETURNING id
            )
            INSERT INTO subscription_plan_changes (subscription_id, plan_slug, plan_version, effective_at, kind, requested_at)
            SELECT id, 'starter', 1, $2, 'start', $2 FROM s RETURNING subscription_id
            """, [tag, start]
        ).map { try $0.decode(0, as: UUID.self) }
        #expect(subscriptions.count == 5000)
        let ids = "{" + subscriptions.map(\.uuidString).joined(separator: ",") + "}"
        let log = TestEnvironment.repositoryRoot + "/.local/log/test-invoicer-\(tag)"
        var processes = try (0..<4).map { try startInvoicer("\($0)", log: log) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let asOf = calendar.date(byAdding: .month, value: 1, to: start)!.addingTimeInterval(7200)
        let year = calendar.component(.year, from: asOf)
        let issued: @Sendable () async throws -> Int = {
            try await fixture.database.query("SELECT count(*) FROM invoices WHERE subscription_id = ANY($1::uuid[])", [ids])[0]
                .decode(0, as: Int.self)
        }
        let bill = try await TestEnvironment.run(
            InvoicingFixture.binary, ["bill", "--as-of", asOf.ISO8601Format(), "--no-wait"],
            environment: ["AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL])
        #expect(bill.status == 0, "\(bill.errors)")
        try await fixture.waitUntil("a fifth of the invoices issued") { try await issued() >= 1000 }
        processes[0].kill(SIGKILL)
        processes[0] = try startInvoicer("0-again", log: log)
        try await fixture.waitUntil("every invoice issued") { try await issued() == 5000 }
        try await fixture.bill(asOf: asOf)  // billing again finds nothing more to do for these
        for process in processes { #expect(await process.stop() == 0) }
        #expect(try await issued() == 5000)
        let distinct = try await fixture.database.query(
            "SELECT count(DISTINCT (subscription_id, period_start)) FROM invoices WHERE subscription_id = ANY($1::uuid[])", [ids]
        )[0].decode(0, as: Int.self)
        #expect(distinct == 5000)
        let numbers = try await fixture.database.query(
            "SELECT count(*), max(substr(number, 10)::int), count(DISTINCT number) FROM invoices WHERE number LIKE $1", ["INV-\(year)-%"])[0]
        #expect(try numbers.decode(0, as: Int.self) == (try numbers.decode(1, as: Int.self)))
        #expect(try numbers.decode(0, as: Int.self) == (try numbers.decode(2, as: Int.self)))
        let totals = try await fixture.database.query(
            "SELECT count(*) FROM invoices WHERE subscription_id = ANY($1::uuid[]) AND total_cents = 29900", [ids])[0].decode(0, as: Int.self)
        #expect(totals == 5000)
        await fixture.close()
    }
}
