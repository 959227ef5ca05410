import Foundation
import PostgresClient
import RabbitMQClient

/// What `PROCESS config` prints and checks: every variable the process reads, its
/// effective value (secrets redacted) and whether anything required is missing.
public enum ConfigurationReport {
    /// The `--help` text listing `keys`: each name with its default (or "required"),
    /// and its meaning on the next line, kept short enough not to be re-wrapped.
    public static func helpText(_ keys: [ConfigurationKey]) -> String {
        let lines = keys.map { key in
            let fallback = key.defaultValue.map { " (default: \($0))" } ?? (key.isRequired ? " (required)" : " (optional)")
            return "  \(key.name)\(fallback)\n      \(key.summary)"
        }
        return "Environment:\n" + lines.joined(separator: "\n")
    }

    /// The effective configuration, one `NAME = value` line per key.
    public static func render(_ keys: [ConfigurationKey], reader: ConfigurationReader) -> String {
        let width = keys.map(\.name.count).max() ?? 0
        return reader.describe(keys)
            .map { "\($0.key.name.padding(toLength: width, withPad: " ", startingAt: 0)) = \($0.shown)" }
            .joined(separator: "\n")
    }

    /// Throws for a broker or database URL among `keys` that its client could not read
    /// (connections are opened later, so a malformed URL would fail only then).
    public static func checkURLs(_ keys: [ConfigurationKey], reader: ConfigurationReader) throws(ConfigurationError) {
        if keys.contains(.amqpURL), let url = reader.optionalString(.amqpURL) {
            do { _ = try AMQPConfiguration(url: url) } catch { throw .invalid(.amqpURL, reason: error.message) }
        }
        if keys.contains(.databaseURL), let url = reader.optionalString(.databaseURL) {
            do { _ = try PostgresConfiguration(url: url) } catch { throw .invalid(.databaseURL, reason: error.message) }
        }
    }

    /// Throws for the first required key that is unset.
    public static func validate(_ keys: [ConfigurationKey], reader: ConfigurationReader) throws(ConfigurationError) {
        for key in keys where key.isRequired {
            _ = try reader.string(key)
        }
    }
}
