import CurlClient
import Foundation
import Invoicing
import Logging
import ServiceLifecycle
import TallyRuntime
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
        let service = try await InvoicerCommand.buildService(configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        let running = Task { try await group.run() }
        let client = try HTTPClient()
        let fixture = try await InvoicingFixture.make()
        do {
            try await fixture.waitUntil("the in-process Invoicer is ready") {
                (try? await client.send(.init(url: "http://127.0.0.1:\(port)/readyz")))?.status == 200
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
        try await running.value
        await fixture.close()
        #expect((try? await client.send(.init(url: "http://127.0.0.1:\(port)/readyz"))) == nil, "the server is gone after the shutdown")
    }
}
