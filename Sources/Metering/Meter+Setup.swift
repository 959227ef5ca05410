import DiskSpool
import Foundation
import Logging
import RabbitMQClient
import UsageEvents

/// A metadata value of a usage event (string, number, bool, null, array, object), as
/// `Meter.track(metadata:)` takes it: importing `Metering` is enough to write one.
public typealias MeteringMetadataValue = JSONValue

extension Meter {
    /// A meter that publishes to the broker at `amqpURL` (Tally's `AMQP_URL`) with
    /// confirms, and keeps what the broker cannot take yet in a disk spool in
    /// `spoolDirectory` (at most `spoolBytes`), drained in order when it is back: the
    /// whole set-up an API server needs, in one call. Run `run()` in the server's service
    /// group and call `shutdown()` on SIGTERM; `track` then flushes before `run` returns.
    public static func connecting(
        to amqpURL: String, spoolDirectory: String, spoolBytes: Int = 1 << 30, options: Options = Options(),
        connectionName: String = "tally-metering", logger: Logger
    ) async throws -> Meter {
        let configuration = try AMQPConfiguration(url: amqpURL, connectionName: connectionName)
        let spool = try await DiskSpool.open(directory: spoolDirectory, maxBytes: spoolBytes)
        let counters = MeteringCounters()
        let publisher = DurablePublisher(configuration: configuration, spool: spool, logger: logger, counters: counters)
        return Meter(publisher: publisher, counters: counters, options: options, logger: logger)
    }
}

extension QuotaStateListener {
    /// A listener of the `quota.state` broadcasts of the broker at `amqpURL` that keeps
    /// `view` up to date (run `run()` beside the meter).
    public init(amqpURL: String, view: QuotaView, logger: Logger) throws {
        self.init(configuration: try AMQPConfiguration(url: amqpURL, connectionName: "tally-quota-state"), view: view, logger: logger)
    }
}
