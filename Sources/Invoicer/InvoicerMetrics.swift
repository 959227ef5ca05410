import Foundation
import Invoicing
import PostgresClient
import Synchronization
import TallyRuntime
import TallyStore

/// The Invoicer's counters (this process) and, read from the database at each scrape,
/// the Stripe backlog (all Invoicers alike), served on `/metrics`.
final class InvoicerMetrics: Sendable {
    struct Counts: Sendable {
        /// Commands by outcome: issued, already_issued, skipped, failed (not computable).
        var invoices: [String: Int] = [:]
        /// Stripe pushes by outcome: synced, retrying (failed, tried again later), failed (no more attempts).
        var pushes: [String: Int] = [:]
    }

    /// What waits for, or was refused by, Stripe, over every Invoicer.
    struct StripeBacklog: Sendable {
        var pendingInvoices = 0
        var failedInvoices = 0
        var failedEvents = 0

        static func load(_ pool: PostgresPool) async throws -> StripeBacklog {
            let backlog = try await StripeSyncState.backlog(on: pool)
            return StripeBacklog(
                pendingInvoices: backlog.pendingInvoices, failedInvoices: backlog.failedInvoices, failedEvents: backlog.failedEvents)
        }
    }

    /// Billing runs, all Invoicers alike: those still running (items pending) and the age
    /// of the oldest (stuck when it grows), and those of the last week that left invoices failed.
    struct BillingRuns: Sendable {
        var running = 0
        var oldestRunningSeconds = 0
        var withFailuresLastWeek = 0

        static func load(_ pool: PostgresPool) async throws -> BillingRuns {
            let summary = try await BillingRunRecords.summary(on: pool)
            return BillingRuns(
                running: summary.running, oldestRunningSeconds: summary.oldestRunningSeconds, withFailuresLastWeek: summary.withFailuresLastWeek)
        }
    }

    static let invoiceOutcomes = ["issued", "already_issued", "skipped", "failed"]
    static let pushOutcomes = ["synced", "retrying", "failed"]

    private let counts = Mutex(Counts())
    /// The command consumers' loop (the `QueueWorker`'s observer).
    let worker = WorkerLoopCounters()

    var snapshot: Counts { counts.withLock { $0 } }

    func invoice(_ outcome: InvoiceGenerator.Outcome) {
        let name =
            switch outcome {
            case .issued: "issued"
            case .alreadyIssued: "already_issued"
            case .skipped: "skipped"
            case .failed: "failed"
            }
        counts.withLock { $0.invoices[name, default: 0] += 1 }
    }

    func push(_ outcome: String) { counts.withLock { $0.pushes[outcome, default: 0] += 1 } }

    /// Prometheus text exposition; the backlog gauges are left out when the database
    /// cannot be read (an absent series, not a false zero).
    func render(backlog: StripeBacklog?, runs: BillingRuns? = nil) -> String {
        let s = snapshot
        var text = PrometheusText()
        func labelled(_ name: String, _ type: String, _ help: String, _ label: String, _ values: [(String, Int)]) {
            text.family(name, type, help, values.map { ([(label, $0.0)], "\($0.1)") })
        }
        labelled(
            "tally_invoicer_invoices_total", "counter", "invoice.generate commands handled by this process, by outcome", "outcome",
            Self.invoiceOutcomes.map { ($0, s.invoices[$0] ?? 0) })
        labelled(
            "tally_invoicer_stripe_pushes_total", "counter",
            "Stripe pushes by this process: synced, retrying (failed, tried again later), failed (no attempts left)", "outcome",
            Self.pushOutcomes.map { ($0, s.pushes[$0] ?? 0) })
        worker.render(into: &text, prefix: "tally_invoicer", messages: "Commands", dependencies: "the database", queue: "invoicer.commands")
        if let backlog {
            labelled(
                "tally_stripe_invoices", "gauge",
                "Invoices waiting for Stripe (pending) or refused after their attempts (failed: `invoicer stripe list --failed`), all Invoicers",
                "status", [("pending", backlog.pendingInvoices), ("failed", backlog.failedInvoices)])
            text.metric(
                "tally_stripe_events_failed", "gauge",
                "Stripe webhook events set aside because they could not be applied (`invoicer stripe list`)", backlog.failedEvents)
        }
        if let runs {
            text.metric("tally_billing_runs_running", "gauge", "Billing runs not yet completed, all Invoicers", runs.running)
            text.metric(
                "tally_billing_run_oldest_running_seconds", "gauge",
                "Age of the oldest billing run still running (0 when none runs); a stuck run keeps growing", runs.oldestRunningSeconds)
            text.metric(
                "tally_billing_runs_with_failures", "gauge",
                "Billing runs of the last 7 days that left invoices failed (their commands are parked in invoicer.commands.parked)",
                runs.withFailuresLastWeek)
        }
        return text.text
    }
}
