import ArgumentParser
import Foundation

/// A Tally executable: its name and every environment variable it reads.
public protocol TallyProcess {
    /// The executable's name, e.g. `aggregator`.
    static var processName: String { get }
    /// Every variable the process reads; `--help`, `config` and the README list these.
    static var configurationKeys: [ConfigurationKey] { get }
}

/// `PROCESS config`: prints the effective configuration of a process (secrets
/// redacted) and fails, naming the variable, when a required one is missing.
public struct ConfigCommand<Process: TallyProcess>: ParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "config",
            abstract: "Print the effective configuration and check that nothing required is missing.",
            discussion: ConfigurationReport.helpText(Process.configurationKeys)
        )
    }

    public init() {}

    public func run() throws {
        let reader = ConfigurationReader()
        print(ConfigurationReport.render(Process.configurationKeys, reader: reader))
        do {
            try ConfigurationReport.validate(Process.configurationKeys, reader: reader)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
