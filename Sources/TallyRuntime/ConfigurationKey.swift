/// One environment variable a Tally process reads: its name, what it is for,
/// its default and whether its value is a secret (never printed or logged).
public struct ConfigurationKey: Sendable, Hashable {
    public let name: String
    public let summary: String
    public let defaultValue: String?
    public let isSecret: Bool
    /// Whether the process runs without it (a feature that stays off, e.g. Stripe).
    public let isOptional: Bool

    public init(
        _ name: String, summary: String, default defaultValue: String? = nil, isSecret: Bool = false,
        isOptional: Bool = false
    ) {
        self.name = name
        self.summary = summary
        self.defaultValue = defaultValue
        self.isSecret = isSecret
        self.isOptional = isOptional
    }

    /// Set neither by the environment nor by a default, the process cannot start.
    public var isRequired: Bool { defaultValue == nil && !isOptional }
}

extension ConfigurationKey {
    /// The RabbitMQ broker: `amqp://user:pass@host:port/vhost?heartbeat=30` (or `amqps://`).
    public static let amqpURL = ConfigurationKey(
        "AMQP_URL",
        summary:
            "RabbitMQ URL, amqp:// or amqps://, with vhost and ?heartbeat=; a cluster's nodes comma-separated (amqp://u:p@mq-1/%2F,mq-2:5672,mq-3)",
        isSecret: true)
    /// The PostgreSQL database: `postgresql://user:pass@host:port/db`.
    public static let databaseURL = ConfigurationKey(
        "DATABASE_URL", summary: "PostgreSQL URL, postgresql://user:pass@host:port/db", isSecret: true)
    /// The SMTP server used for email: `smtp://user:pass@host:port` (or `smtps://`).
    public static let smtpURL = ConfigurationKey(
        "SMTP_URL", summary: "SMTP server URL, smtp:// or smtps://", isSecret: true)
    /// The minimum log level.
    public static let logLevel = ConfigurationKey(
        "LOG_LEVEL", summary: "trace, debug, info, notice, warning, error or critical", default: "info")
    /// The log line format.
    public static let logFormat = ConfigurationKey(
        "LOG_FORMAT", summary: "json (one object per line) or text", default: "json")
    /// The folder holding the numbered SQL migrations.
    public static let migrationsDirectory = ConfigurationKey(
        "TALLY_MIGRATIONS_DIR", summary: "folder of numbered SQL migrations", default: "ops/sql")
}

extension ConfigurationKey {
    /// Where finance receives every invoice (SPEC §1).
    public static let financeEmail = ConfigurationKey(
        "FINANCE_EMAIL", summary: "address that receives a copy of every invoice")
}

extension ConfigurationKey {
    /// Whether webhook endpoints may point at loopback and private addresses (SSRF guard off).
    /// Tally's clock (`TallyClock`): read and checked at start.
    public static let clockOffset = ConfigurationKey(
        "TALLY_CLOCK_OFFSET", summary: "seconds added to the system clock for every date decision (a test clock, ±50 years; never in production)",
        isOptional: true)
    public static let webhookAllowPrivate = ConfigurationKey(
        "TALLY_WEBHOOK_ALLOW_PRIVATE", summary: "1: webhooks may go to loopback and private addresses (local development only)",
        default: "0")
}

extension ConfigurationKey {
    /// Stripe's secret key; unset, nothing is sent to Stripe.
    public static let stripeAPIKey = ConfigurationKey(
        "STRIPE_API_KEY", summary: "Stripe secret key (sk_…); unset: invoices are not pushed to Stripe", isSecret: true,
        isOptional: true)
    /// Where Stripe's API answers (an emulator such as localstripe in tests).
    public static let stripeAPIBase = ConfigurationKey(
        "STRIPE_API_BASE", summary: "Stripe API base URL (localstripe in development)", default: "https://api.stripe.com")
    /// The payment provider of tenants created without one.
    public static let defaultPaymentProvider = ConfigurationKey(
        "TALLY_DEFAULT_PAYMENT_PROVIDER",
        summary: "payment_provider of tenants created without one: stripe or none (default: stripe when STRIPE_API_KEY is set)",
        isOptional: true)
}
