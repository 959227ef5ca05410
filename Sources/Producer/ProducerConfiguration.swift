import TallyMessaging
import TallyRuntime

/// Everything `producer serve` reads; `keys` lists every variable.
struct ProducerConfiguration: Sendable {
    var host = "127.0.0.1"
    var port = 8080
    var amqpURL: String
    var databaseURL: String
    var adminToken: String
    var spoolDirectory = ".local/spool/producer"
    var spoolMaxBytes = 1 << 30
    var databasePoolSize = 4
    /// The exchange usage is published to; tests use one of their own so the broker's
    /// answers (a nack when another queue on `usage` is deleted mid-routing) are theirs alone.
    var usageExchange = ExchangeName.usage

    static let host = ConfigurationKey("PRODUCER_HOST", summary: "address the ingest service listens on", default: "127.0.0.1")
    static let port = ConfigurationKey("PRODUCER_PORT", summary: "TCP port of the ingest service", default: "8080")
    static let spoolDirectory = ConfigurationKey(
        "TALLY_SPOOL_DIR", summary: "disk spool used while RabbitMQ is unavailable", default: ".local/spool/producer")
    static let spoolMaxBytes = ConfigurationKey(
        "TALLY_SPOOL_MAX_BYTES", summary: "spool size limit; beyond it ingest answers 503", default: "1073741824")
    static let adminToken = ConfigurationKey(
        "BILLING_ADMIN_TOKEN", summary: "the operator's bearer token (may send any tenant's usage)", isSecret: true)
    static let poolSize = ConfigurationKey("DATABASE_POOL_SIZE", summary: "PostgreSQL connections (API key checks)", default: "4")

    static let keys: [ConfigurationKey] = [
        host, port, .amqpURL, .databaseURL, adminToken, spoolDirectory, spoolMaxBytes, poolSize,
        .migrationsDirectory, .clockOffset, .logLevel, .logFormat,
    ]

    init(amqpURL: String, databaseURL: String, adminToken: String) {
        self.amqpURL = amqpURL
        self.databaseURL = databaseURL
        self.adminToken = adminToken
    }

    init(reader: ConfigurationReader) throws(ConfigurationError) {
        self.init(
            amqpURL: try reader.string(.amqpURL), databaseURL: try reader.string(.databaseURL),
            adminToken: try reader.token(Self.adminToken))
        host = try reader.string(Self.host)
        port = try reader.int(Self.port, in: 0...65535)
        spoolDirectory = try reader.string(Self.spoolDirectory)
        spoolMaxBytes = try reader.int(Self.spoolMaxBytes, in: (1 << 20)...Int.max)
        databasePoolSize = try reader.int(Self.poolSize, in: 1...64)
    }
}
