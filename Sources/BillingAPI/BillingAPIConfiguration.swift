import Foundation
import InvoicePDF
import Invoicing
import Logging
import TallyRuntime
import TallyStore

/// Everything `billing-api serve` reads, with defaults; `keys` is the one list of
/// every variable (shown by `--help` and `billing-api config`).
struct BillingAPIConfiguration: Sendable {
    var host = "127.0.0.1"
    var port = 8081
    var databaseURL: String
    var adminToken: String
    var databasePoolSize = 8
    var graceSeconds = BillingRunPlanner.defaultGraceSeconds
    /// The issuer printed on every invoice PDF (`InvoiceSeller.keys`).
    var seller = InvoiceSeller()
    var stripeWebhookSecret: String?
    var defaultPaymentProvider: PaymentProvider = .none
    var allowPrivateWebhooks = false
    /// Dashboard cookies always carry `Secure` (set when users reach the server over TLS
    /// through a proxy that does not send `X-Forwarded-Proto: https`).
    var secureCookies = false

    static let host = ConfigurationKey("BILLING_API_HOST", summary: "address to listen on", default: "127.0.0.1")
    static let port = ConfigurationKey("BILLING_API_PORT", summary: "TCP port to listen on", default: "8081")
    static let adminToken = ConfigurationKey(
        "BILLING_ADMIN_TOKEN", summary: "the operator's bearer token (admin access)", isSecret: true)
    static let poolSize = ConfigurationKey(
        "DATABASE_POOL_SIZE", summary: "PostgreSQL connections per process", default: "8")

    static let grace = ConfigurationKey(
        "BILLING_GRACE_SECONDS", summary: "a period is billed once as_of ≥ its end + this grace (SPEC §2)",
        default: "\(BillingRunPlanner.defaultGraceSeconds)")

    static let stripeWebhookSecret = ConfigurationKey(
        "STRIPE_WEBHOOK_SECRET", summary: "signing secret of the Stripe webhook endpoint (whsec_…); unset: Stripe is off",
        isSecret: true, isOptional: true)

    static let secureCookies = ConfigurationKey(
        "DASHBOARD_SECURE_COOKIES", summary: "1: dashboard cookies are always Secure (served over TLS); 0: only behind X-Forwarded-Proto: https",
        default: "0")

    static let keys: [ConfigurationKey] =
        [
            host, port, .databaseURL, adminToken, poolSize, grace, secureCookies,
        ] + InvoiceSeller.keys + [
            stripeWebhookSecret, .stripeAPIKey, .defaultPaymentProvider, .webhookAllowPrivate, .migrationsDirectory, .clockOffset, .logLevel,
            .logFormat,
        ]

    init(databaseURL: String, adminToken: String) {
        self.databaseURL = databaseURL
        self.adminToken = adminToken
    }

    init(reader: ConfigurationReader) throws(ConfigurationError) {
        self.init(databaseURL: try reader.string(.databaseURL), adminToken: try reader.token(Self.adminToken))
        host = try reader.string(Self.host)
        port = try reader.int(Self.port, in: 0...65535)
        databasePoolSize = try reader.int(Self.poolSize, in: 1...256)
        graceSeconds = try reader.int(Self.grace, in: 0...(90 * 86_400))
        seller = try InvoiceSeller(reader: reader)
        stripeWebhookSecret = reader.optionalString(Self.stripeWebhookSecret)
        allowPrivateWebhooks = try reader.choice(.webhookAllowPrivate, among: ["0", "1"]) == "1"
        secureCookies = try reader.choice(Self.secureCookies, among: ["0", "1"]) == "1"
        if reader.optionalString(.defaultPaymentProvider) != nil {
            defaultPaymentProvider = PaymentProvider(rawValue: try reader.choice(.defaultPaymentProvider, among: ["stripe", "none"])) ?? .none
        } else {
            defaultPaymentProvider = reader.optionalString(.stripeAPIKey) == nil ? .none : .stripe
        }
    }
}
