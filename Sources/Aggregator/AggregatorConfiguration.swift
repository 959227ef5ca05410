import TallyMessaging
import TallyRuntime

/// Everything `aggregator run` reads; `keys` lists every variable.
struct AggregatorConfiguration: Sendable {
    var amqpURL: String
    var databaseURL: String
    var host = "127.0.0.1"
    var port = 9091
    /// A batch is written in transactions of at most about this many (tenant, hour) pairs.
    var tenantHoursPerTransaction = 10_000
    /// The shared worker loop's settings: batches of up to `prefetch` messages.
    var worker: QueueWorkerSettings = {
        var settings = QueueWorkerSettings(name: "aggregator", queue: QueueName.aggregatorUsage)
        settings.prefetch = 40
        settings.maxBatch = 40
        settings.maxBatchBytes = 8 << 20
        return settings
    }()

    static let host = ConfigurationKey("AGGREGATOR_HOST", summary: "address of /metrics and /healthz", default: "127.0.0.1")
    static let port = ConfigurationKey("AGGREGATOR_PORT", summary: "TCP port of /metrics and /healthz (0: any free port)", default: "9091")
    static let queue = ConfigurationKey(
        "AGGREGATOR_QUEUE", summary: "the usage work queue (its .retry.* and .parked queues come with it)",
        default: QueueName.aggregatorUsage)
    static let consumers = ConfigurationKey(
        "AGGREGATOR_CONSUMERS", summary: "consumers in this process, each with its own AMQP and PostgreSQL connection",
        default: "2")
    static let prefetch = ConfigurationKey(
        "AGGREGATOR_PREFETCH", summary: "unacked messages per consumer; also the most messages in one batch", default: "40")
    static let batchBytes = ConfigurationKey(
        "AGGREGATOR_BATCH_BYTES", summary: "a batch is written once its message bodies reach this size (or, see below, more)",
        default: "4194304")
    static let maxBatchBytes = ConfigurationKey(
        "AGGREGATOR_BATCH_BYTES_MAX",
        summary: "batches grow up to this size while their events fall in few (tenant, hour) pairs (one transaction's worth)",
        default: "8388608")
    static let lingerMilliseconds = ConfigurationKey(
        "AGGREGATOR_LINGER_MS", summary: "longest wait for more messages after a batch's first one, while the queue holds more",
        default: "100")

    static let tenantHoursPerTransaction = ConfigurationKey(
        "AGGREGATOR_TENANT_HOURS_PER_TRANSACTION",
        summary: "a batch is written in transactions of at most about this many (tenant, hour) pairs (bounds memory)",
        default: "10000")

    static let keys: [ConfigurationKey] = [
        .amqpURL, .databaseURL, host, port, queue, consumers, prefetch, batchBytes, maxBatchBytes, lingerMilliseconds, tenantHoursPerTransaction,
        .migrationsDirectory, .clockOffset, .logLevel, .logFormat,
    ]

    init(amqpURL: String, databaseURL: String) {
        self.amqpURL = amqpURL
        self.databaseURL = databaseURL
    }

    init(reader: ConfigurationReader) throws(ConfigurationError) {
        self.init(amqpURL: try reader.string(.amqpURL), databaseURL: try reader.string(.databaseURL))
        host = try reader.string(Self.host)
        port = try reader.int(Self.port, in: 0...65535)
        worker.consumers = try reader.int(Self.consumers, in: 1...64)
        worker.queue = try reader.string(Self.queue)
        worker.prefetch = UInt16(try reader.int(Self.prefetch, in: 1...2000))
        worker.maxBatch = Int(worker.prefetch)
        worker.batchBytes = try reader.int(Self.batchBytes, in: 1024...(256 << 20))
        worker.maxBatchBytes = try reader.int(Self.maxBatchBytes, in: 1024...(256 << 20))
        // Set below the usual batch size, the cap was silently the usual size instead.
        if reader.optionalString(Self.maxBatchBytes) != nil, worker.maxBatchBytes < worker.batchBytes {
            throw .invalid(
                Self.maxBatchBytes, reason: "is below AGGREGATOR_BATCH_BYTES (\(worker.batchBytes)); the cap must be at least the usual size")
        }
        worker.linger = .milliseconds(try reader.int(Self.lingerMilliseconds, in: 0...60_000))
        tenantHoursPerTransaction = try reader.int(Self.tenantHoursPerTransaction, in: 1...10_000_000)
    }
}
