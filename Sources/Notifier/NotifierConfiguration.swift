import CurlClient
import InvoicePDF
import TallyMessaging
import TallyRuntime
import TallyStore

/// Everything `notifier run` reads; `keys` lists every variable.
struct NotifierConfiguration: Sendable {
    var amqpURL: String
    var databaseURL: String
    var smtp: SMTPConfiguration
    var financeEmail: String
    var host = "127.0.0.1"
    var port = 9093
    var worker = QueueWorkerSettings(name: "notifier", queue: QueueName.notifierEvents)
    var allowPrivateWebhooks = false
    /// The issuer on the attached PDFs and the From of every email.
    var seller = InvoiceSeller()

    static let host = ConfigurationKey("NOTIFIER_HOST", summary: "address of /metrics, /healthz and /readyz", default: "127.0.0.1")
    static let port = ConfigurationKey("NOTIFIER_PORT", summary: "TCP port of /metrics, /healthz and /readyz (0: any free port)", default: "9093")
    static let queue = ConfigurationKey(
        "NOTIFIER_QUEUE", summary: "the billing-event work queue (its .retry.* and .parked queues come with it)",
        default: QueueName.notifierEvents)
    static let consumers = ConfigurationKey(
        "NOTIFIER_CONSUMERS", summary: "consumers per process, each with its own AMQP, PostgreSQL, SMTP and HTTP connections",
        default: "4")
    static let prefetch = ConfigurationKey("NOTIFIER_PREFETCH", summary: "unacked billing events per consumer", default: "8")
    static let retryDelays = ConfigurationKey(
        "NOTIFIER_RETRY_DELAYS", summary: "waits between delivery attempts, e.g. 5s,30s,2m,10m,1h (one retry queue each)",
        default: "5s,30s,2m,10m,1h")
    static let maxAttempts = ConfigurationKey(
        "NOTIFIER_MAX_ATTEMPTS", summary: "delivery attempts of one event before it is parked", default: "8")
    static let keys: [ConfigurationKey] =
        [
            .amqpURL, .databaseURL, .smtpURL, .financeEmail, host, port, queue, consumers, prefetch, retryDelays, maxAttempts, .webhookAllowPrivate,
        ] + InvoiceSeller.keys + [.migrationsDirectory, .logLevel, .logFormat]

    init(reader: ConfigurationReader) throws(ConfigurationError) {
        amqpURL = try reader.string(.amqpURL)
        databaseURL = try reader.string(.databaseURL)
        let smtpURL = try reader.string(.smtpURL)
        do {
            smtp = try SMTPConfiguration(url: smtpURL)
        } catch {
            throw .invalid(.smtpURL, reason: error.message)
        }
        financeEmail = try reader.string(.financeEmail)
        // As a tenant's billing email is checked: one a mail server takes.
        guard NewTenant.looksLikeEmail(financeEmail) else {
            throw .invalid(.financeEmail, reason: "expected one address, local@domain in plain ASCII")
        }
        host = try reader.string(Self.host)
        port = try reader.int(Self.port, in: 0...65535)
        worker.queue = try reader.string(Self.queue)
        worker.consumers = try reader.int(Self.consumers, in: 1...64)
        worker.prefetch = UInt16(try reader.int(Self.prefetch, in: 1...2000))
        guard let delays = RetryPolicy.delays(parsing: try reader.string(Self.retryDelays)) else {
            throw .invalid(
                Self.retryDelays, reason: "expected a comma-separated list such as 5s,30s,2m,1h (units ms, s, m, h; each at most 49 days)")
        }
        worker.retry = RetryPolicy(
            delays: delays, maxAttempts: try reader.int(Self.maxAttempts, in: 1...100), deliveryLimit: RetryPolicy.notifications.deliveryLimit)
        // Retry queues and parking lot follow the queue and policy: declare what differs from
        // Tally's topology (a queue of another name is bound by whoever named it).
        if worker.queue != QueueName.notifierEvents || worker.retry != .notifications {
            worker.topology = Topology.tally.adding(workQueue: worker.queue, boundTo: nil, routingKey: "#", retry: worker.retry)
        }
        allowPrivateWebhooks = try reader.choice(.webhookAllowPrivate, among: ["0", "1"]) == "1"
        seller = try InvoiceSeller(reader: reader)
    }
}
