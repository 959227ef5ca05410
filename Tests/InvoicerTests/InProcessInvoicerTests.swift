import CurlClient
import Foundation
import Invoicing
import Logging
import ServiceLifecycle
import Synchronization
import TallyRuntime
import TallyStore
import TallyTestSupport
import Testing

@testable import Invoicer

/// `invoicer run`'s service, built by `InvoicerCommand.buildService` and run in the test
/// process (no binary, no build step before the suite): it becomes ready, bills beside the
/// stack's Invoicer, and stops at a graceful shutdown with its services in reverse order.
@Suite("Invoicer in process")
struct InProcessInvoicerTests {
    @Test("built in process: /readyz and /metrics answer, a run it helps bill completes, and a graceful shutdown ends it cleanly")
    func inProcess() async throws {
        let port = try TestEnvironment.freePort()
        let configuration = try InvoicerConfiguration(
            reader: ConfigurationReader(environment: [
                "AMQP_URL": TestEnvironment.amqpURL, "DATABASE_URL": TestEnvironment.databaseURL, "INVOICER_PORT": "\(port)",
                "INVOICER_CONSUMERS": "1",
            ]))
        let logger = Logger(label: "test.invoicer.in-process")
        let client = try HTTPClient()
        let fixture = try await InvoicingFixture.make()
        let service = try await InvoicerCommand.buildService(configuration, logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(services: [service], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(60)  // a service that hangs fails the test, not the run
        let group = ServiceGroup(configuration: groupConfiguration)
        let ended = Mutex(false)
        let running = Task {
            defer { ended.withLock { $0 = true } }
            try await group.run()
        }
        do {
            // Ready, or the group ended (the port taken, the broker gone): fail at once, not after a timeout.
            while (try? await client.send(.init(url: "http://127.0.0.1:\(port)/readyz")))?.status != 200 {
                guard !ended.withLock({ $0 }) else { throw InProcessFailure(description: "the in-process Invoicer stopped before it was ready") }
                try await Task.sleep(for: .milliseconds(100))
            }
            let metrics = try await client.send(.init(url: "http://127.0.0.1:\(port)/metrics"))
            #expect(metrics.status == 200)
            #expect(String(decoding: metrics.body, as: UTF8.self).contains("tally_invoicer_"))
            // A run of one tenant's period: its command goes out through an outbox sweeper
            // (this one's or the stack's) and one of the two Invoicers issues the invoice.
            let tenant = try await fixture.tenant()
            let start = TestClock.now().addingTimeInterval(-40 * 86_400)
            try await fixture.subscribe(tenant, plan: "starter", start: start)
            let status = try await fixture.bill(asOf: TestClock.now(), tenants: [tenant])
            #expect(status?.issued == 1)
            #expect(try await fixture.invoices(tenant).count == 1)
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await running.value
            await fixture.close()
            throw error
        }
        await group.triggerGracefulShutdown()
        let shutdown = await running.result
        await fixture.close()
        #expect(throws: Never.self, "the group shuts down without an error") { try shutdown.get() }
        #expect((try? await client.send(.init(url: "http://127.0.0.1:\(port)/readyz"))) == nil, "the server is gone after the shutdown")
    }

    struct InProcessFailure: Error, CustomStringConvertible {
        let description: String
    }
}
