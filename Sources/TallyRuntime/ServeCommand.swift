import ArgumentParser
import CivilTime
import Logging
import ServiceLifecycle
import UnixSignals

/// A process's configuration, read from the environment, with the address of its HTTP
/// server (the API itself, or a worker's `/metrics`, `/healthz` and `/readyz`).
public protocol ServerConfiguration: Sendable {
    init(reader: ConfigurationReader) throws
    var host: String { get set }
    var port: Int { get set }
}

/// A Tally executable whose main command builds one service (its HTTP server with the
/// worker services beside it) and runs it until SIGTERM or SIGINT: every executable's
/// `run` or `serve`, written once (`ServeCommand`). Tests build the same service in
/// process with `buildService`.
public protocol TallyServer: TallyProcess {
    associatedtype Configuration: ServerConfiguration
    associatedtype Server: Service
    /// `run` for a worker, `serve` for an HTTP server.
    static var serveCommandName: String { get }
    /// What the command does, for `--help`.
    static var serveAbstract: String { get }
    /// Process-wide set-up before anything else runs (the allocator's settings).
    static func prepareProcess()
    /// The process's service, as production and tests run it.
    static func buildService(_ configuration: Configuration, logger: Logger) async throws -> Server
}

extension TallyServer {
    public static func prepareProcess() {}
}

/// `PROCESS run` / `PROCESS serve`: reads the configuration (the address may be
/// overridden with `--host` and `--port`), sets up logging, builds the service and runs
/// it until SIGTERM or SIGINT, then shuts its services down in reverse order of start.
public struct ServeCommand<Process: TallyServer>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: Process.serveCommandName, abstract: Process.serveAbstract,
            discussion: ConfigurationReport.helpText(Process.configurationKeys))
    }

    @Option(help: "Address to listen on (overrides the configured host, below).") var host: String?
    @Option(help: "Port to listen on (overrides the configured port, below; 0: any free port).") var port: Int?

    public init() {}

    public func validate() throws {
        // 70000 listened on 4464 (wrapped to 16 bits); -1 failed with a socket error.
        if let port, !(0...65_535).contains(port) { throw ValidationError("--port must be 0 to 65535 (0: any free port)") }
    }

    public func run() async throws {
        Process.prepareProcess()
        let reader = ConfigurationReader()
        let logger = try LogBootstrap.configure(reader, label: Process.processName)
        var configuration = try Process.Configuration(reader: reader)
        // At start, not at the first request that reads the clock (it exits 64 when invalid).
        _ = TallyClock.offset
        if let host { configuration.host = host }
        if let port { configuration.port = port }
        let service = try await Process.buildService(configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
