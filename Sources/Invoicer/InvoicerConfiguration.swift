import Invoicing
import StripeSync
import TallyRuntime

/// Everything the Invoicer reads; `keys` lists every variable.
struct InvoicerConfiguration: Sendable {
    var amqpURL: String
    var databaseURL: String
    var host = "127.0.0.1"
    var port = 9092
    var consumers = 2
    var prefetch: UInt16 = 64
    var graceSeconds = BillingRunPlanner.defaultGraceSeconds
    var paymentTermsDays = InvoiceGenerator.defaultPaymentTermsDays
    /// Set when STRIPE_API_KEY is: invoices of `stripe` tenants are pushed there.
    var stripe: StripeConfiguration?

    static let host = ConfigurationKey("INVOICER_HOST", summary: "address of /metrics, /healthz and /readyz (invoicer run)", default: "127.0.0.1")
    static let port = ConfigurationKey(
        "INVOICER_PORT", summary: "TCP port of /metrics, /healthz and /readyz (invoicer run; 0: any free port)", default: "9092")
    static let consumers = ConfigurationKey(
        "INVOICER_CONSUMERS", summary: "command consumers per process, each with its own AMQP and PostgreSQL connection", default: "2")
    static let prefetch = ConfigurationKey(
        "INVOICER_PREFETCH", summary: "unacked commands per consumer, and the most invoices issued in one transaction", default: "64")
    static let grace = ConfigurationKey(
        "BILLING_GRACE_SECONDS", summary: "a period is billed once as_of ≥ its end + this grace (SPEC §2)",
        default: "\(BillingRunPlanner.defaultGraceSeconds)")
    static let paymentTerms = ConfigurationKey(
        "TALLY_PAYMENT_TERMS_DAYS", summary: "an invoice is due this many days after it is issued (0...365)",
        default: "\(InvoiceGenerator.defaultPaymentTermsDays)")

    static let keys: [ConfigurationKey] = [
        .amqpURL, .databaseURL, host, port, consumers, prefetch, grace, paymentTerms, .stripeAPIKey, .stripeAPIBase, .migrationsDirectory,
        .clockOffset, .logLevel,
        .logFormat,
    ]

    init(reader: ConfigurationReader) throws(ConfigurationError) {
        amqpURL = try reader.string(.amqpURL)
        databaseURL = try reader.string(.databaseURL)
        host = try reader.string(Self.host)
        port = try reader.int(Self.port, in: 0...65535)
        consumers = try reader.int(Self.consumers, in: 1...64)
        prefetch = UInt16(try reader.int(Self.prefetch, in: 1...2000))
        graceSeconds = try reader.int(Self.grace, in: 0...(90 * 86_400))
        paymentTermsDays = try reader.int(Self.paymentTerms, in: 0...365)
        if let key = reader.optionalString(.stripeAPIKey) {
            let base = try reader.string(.stripeAPIBase)
            guard base.hasPrefix("https://") || base.hasPrefix("http://") else {
                throw .invalid(.stripeAPIBase, reason: "expected an http:// or https:// URL")
            }
            stripe = StripeConfiguration(apiKey: key, apiBase: base)
        }
    }
}
