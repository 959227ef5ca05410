import ArgumentParser
import CivilTime
import Foundation
import Logging

/// A Tally executable: its name and every environment variable it reads.
public protocol TallyProcess {
    /// The executable's name, e.g. `aggregator`.
    static var processName: String { get }
    /// Every variable the process reads; `--help`, `config` and the README list these.
    static var configurationKeys: [ConfigurationKey] { get }
}

/// `PROCESS config`: prints the effective configuration of a process (secrets
/// redacted) and fails (exit 1), naming the variable, when the process could not start
/// with it: a required one missing, or a value it would refuse (a port out of range, a
/// prefetch that is not a number, an unreadable URL).
public struct ConfigCommand<Process: TallyServer>: ParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "config",
            abstract: "Print the effective configuration and check it as the process would at start.",
            discussion: ConfigurationReport.helpText(Process.configurationKeys)
        )
    }

    public init() {}

    public func run() throws {
        let reader = ConfigurationReader()
        print(ConfigurationReport.render(Process.configurationKeys, reader: reader))
        do {
            try ConfigurationReport.validate(Process.configurationKeys, reader: reader)
            // What `run`/`serve` reads first, in the same order, so the first fault is the
            // one the process would die of.
            _ = try reader.choice(.logLevel, among: Logger.Level.allCases.map(\.rawValue))
            _ = try reader.choice(.logFormat, among: ["json", "text"])
            _ = try Process.Configuration(reader: reader)
            // Read lazily elsewhere (a bad value ended the server at its first dated request).
            _ = TallyClock.offset
            try ConfigurationReport.checkURLs(Process.configurationKeys, reader: reader)
        } catch {
            throw CommandFailure("\(error)")
        }
        print("configuration OK")
    }
}
