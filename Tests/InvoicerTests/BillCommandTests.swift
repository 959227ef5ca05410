import Foundation
import TallyTestSupport
import Testing

/// `invoicer bill`'s guards, before anything is planned.
@Suite("invoicer bill: an --as-of in the future or outside 2000–9999 is refused")
struct BillCommandTests {
    @Test("a future --as-of (a typo of the year) issues nothing without --allow-future; a year outside 2000–9999 is refused")
    func futureAsOf() async throws {
        let environment = ["AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL]
        let later = TestClock.now().addingTimeInterval(36 * 365 * 86_400).ISO8601Format()
        let future = try await TestEnvironment.run(InvoicingFixture.binary, ["bill", "--as-of", later, "--no-wait"], environment: environment)
        #expect(future.status == 64, "\(future.output) \(future.errors)")
        #expect(future.errors.contains("is in the future") && future.errors.contains("--allow-future"), "\(future.errors)")
        #expect(!future.output.contains("billing run"), "\(future.output)")
        let ancient = try await TestEnvironment.run(
            InvoicingFixture.binary, ["bill", "--as-of", "1999-12-31T00:00:00Z", "--no-wait"], environment: environment)
        #expect(ancient.status == 64)
        #expect(ancient.errors.contains("years 2000 to 9999"), "\(ancient.errors)")
        // A clock offset that is not a number, or beyond ±50 years (1e30 trapped converting the
        // first timestamp), is an invalid setting naming it (exit 1, as every setting), not a crash.
        for value in ["abc", "1e30"] {
            var broken = environment
            broken["TALLY_CLOCK_OFFSET"] = value
            let clock = try await TestEnvironment.run(InvoicingFixture.binary, ["bill", "--no-wait"], environment: broken)
            #expect(clock.status == 1, "\(clock.status) \(clock.errors)")
            #expect(clock.errors.contains("TALLY_CLOCK_OFFSET=\(value) is invalid") && !clock.errors.contains("Fatal error"), "\(clock.errors)")
        }
    }
}
