import Foundation

/// Where the real servers started by `./ops/local.sh up` listen, read from the
/// environment (`.local/env`, exported by `./ops/local.sh test`) with the same
/// loopback defaults that script uses, so a focused `swift test --filter` run
/// works once the stack is up.
public enum TestEnvironment {
    /// The value of `key`, or `fallback` when it is unset or empty.
    public static func value(_ key: String, default fallback: String) -> String {
        guard let value = ProcessInfo.processInfo.environment[key], !value.isEmpty else {
            return fallback
        }
        return value
    }

    public static var amqpURL: String { value("AMQP_URL", default: "amqp://guest:guest@127.0.0.1:35672/%2F") }
    public static var databaseURL: String { value("DATABASE_URL", default: "postgresql://tally:tally@127.0.0.1:35432/tally") }
    public static var smtpURL: String { value("SMTP_URL", default: "smtp://127.0.0.1:35025") }
    public static var mailSinkDirectory: String { value("MAIL_SINK_DIR", default: repositoryRoot + "/.local/mail") }
    public static var adminToken: String { value("BILLING_ADMIN_TOKEN", default: "local-admin-token") }
    /// `.local/bin/rabbitmqctl`: a wrapper that addresses our private RabbitMQ node.
    public static var rabbitmqctl: String { value("TALLY_RABBITMQCTL", default: repositoryRoot + "/.local/bin/rabbitmqctl") }

    /// The checkout this test binary was built from (three levels above this file).
    public static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .path
    }
}
