import Foundation
import Logging

/// Sets up swift-log once per process from `LOG_LEVEL` and `LOG_FORMAT`:
/// JSON lines (for log shippers) or plain text, always on standard error.
public enum LogBootstrap {
    /// Installs the process-wide log handler; call it first thing in `run()`.
    public static func configure(_ reader: ConfigurationReader, label: String) throws(ConfigurationError) -> Logger {
        let levelName = try reader.choice(.logLevel, among: Logger.Level.allCases.map(\.rawValue))
        let format = try reader.choice(.logFormat, among: ["json", "text"])
        let level = Logger.Level(rawValue: levelName) ?? .info
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                format == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
