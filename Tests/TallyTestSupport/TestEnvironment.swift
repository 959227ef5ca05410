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

    public static var amqpURL: String { value("AMQP_URL", default: "amqp://guest:guest@127.0.0.1:26672/%2F") }
    public static var databaseURL: String { value("DATABASE_URL", default: "postgresql://tally:tally@127.0.0.1:26432/tally") }
    public static var smtpURL: String { value("SMTP_URL", default: "smtp://127.0.0.1:26025") }
    public static var mailSinkDirectory: String { value("MAIL_SINK_DIR", default: repositoryRoot + "/.local/mail") }
    public static var adminToken: String { value("BILLING_ADMIN_TOKEN", default: "local-admin-token") }
    public static var apiURL: String { value("TALLY_API_URL", default: "http://127.0.0.1:28081") }
    /// `/metrics` of the Invoicer `./ops/local.sh up` runs.
    public static var invoicerURL: String { value("TALLY_INVOICER_URL", default: "http://127.0.0.1:28084") }
    /// localstripe, started by `./ops/local.sh up`; the running Invoicer pushes to it.
    public static var stripeAPIBase: String { value("STRIPE_API_BASE", default: "http://127.0.0.1:28420") }
    public static var stripeAPIKey: String { value("STRIPE_API_KEY", default: "sk_test_tally_local") }
    /// The secret the running billing API verifies Stripe webhooks with (`.local/secrets`).
    public static var stripeWebhookSecret: String {
        let stored = (try? String(contentsOfFile: repositoryRoot + "/.local/secrets/stripe-webhook-secret", encoding: .utf8)) ?? ""
        return value("STRIPE_WEBHOOK_SECRET", default: stored.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    /// `.local/bin/rabbitmqctl`: a wrapper that addresses our private RabbitMQ node.
    public static var rabbitmqctl: String { value("TALLY_RABBITMQCTL", default: repositoryRoot + "/.local/bin/rabbitmqctl") }

    /// Whether this is the serial phase of `./ops/local.sh test`, which runs one at a time
    /// the tests that stop and restart the real servers (suites named `…OutageTests`) and
    /// the heavy ones that would starve the parallel phase of CPU (`…SerialTests`).
    public static var disruptive: Bool { value("TALLY_DISRUPTIVE_TESTS", default: "0") == "1" }

    /// Runs `./ops/local.sh ARGUMENTS` (e.g. `stop rabbitmq`) and waits for it; throws when it fails.
    ///
    /// Spawned and reaped with posix_spawn/waitpid: Foundation's `Process.waitUntilExit`
    /// was seen here never returning for a child that had already exited. Waited for on a
    /// thread of its own (`Spawn.exit`), never on the cooperative pool.
    public static func ops(_ arguments: String...) async throws {
        let pid = try Spawn.start(repositoryRoot + "/ops/local.sh", arguments)
        let status = await Spawn.exit(of: pid)
        guard status == 0 else { throw OpsError(command: arguments.joined(separator: " "), status: status) }
    }

    /// Runs `path ARGUMENTS` to completion and returns its standard output (standard
    /// error is discarded); throws when it exits non-zero. posix_spawn, as in `ops`.
    public static func output(of path: String, _ arguments: [String]) async throws -> String {
        let (status, output, _) = try await run(path, arguments)
        guard status == 0 else { throw OpsError(command: path, status: status) }
        return output
    }

    /// Runs `path ARGUMENTS` with the test's environment plus `environment` to completion
    /// and returns its exit status, standard output and standard error.
    public static func run(
        _ path: String, _ arguments: [String], environment: [String: String] = [:]
    ) async throws -> (status: Int32, output: String, errors: String) {
        let capture = Capture()
        defer { capture.remove() }
        let pid = try capture.start(path, arguments, environment: environment)
        return capture.result(status: await Spawn.exit(of: pid))
    }

    /// `run` for a command that returns at once (`mount`), where the caller cannot await:
    /// it blocks the calling thread.
    static func runBlocking(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let capture = Capture()
        defer { capture.remove() }
        let pid = try capture.start(path, arguments)
        return capture.result(status: Spawn.wait(pid))
    }

    /// A child's standard output and error, in two temporary files.
    private struct Capture {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-test-\(UUID().uuidString)").path

        func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> pid_t {
            try Spawn.start(executable, arguments, environment: environment, output: path + ".out", errors: path + ".err")
        }

        func result(status: Int32) -> (status: Int32, output: String, errors: String) {
            let output = (try? String(contentsOfFile: path + ".out", encoding: .utf8)) ?? ""
            let errors = (try? String(contentsOfFile: path + ".err", encoding: .utf8)) ?? ""
            return (status, output, errors)
        }

        func remove() {
            try? FileManager.default.removeItem(atPath: path + ".out")
            try? FileManager.default.removeItem(atPath: path + ".err")
        }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks
    /// it), for a child process that must be told its port up front.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw OpsError(command: "/socket", status: errno) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
            }
        }
        guard bound else { throw OpsError(command: "/bind", status: errno) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The checkout this test binary was built from (three levels above this file).
    public static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .path
    }
}

/// A child process did not get where a test needed it.
public struct ChildProcessFailure: Error, CustomStringConvertible {
    public let description: String
}

/// `./ops/local.sh` failed.
public struct OpsError: Error, CustomStringConvertible {
    public let command: String
    public let status: Int32
    public var description: String {
        (command.hasPrefix("/") ? command : "./ops/local.sh \(command)") + " exited with \(status)"
    }
}

/// A child process started by a test (e.g. `producer serve`), killed by the test.
public struct ChildProcess: Sendable {
    public let pid: pid_t
    /// Where its output goes (appended), and how long that file was before it started.
    public let log: String
    let logStart: UInt64

    /// Starts `path ARGUMENTS` with the test's environment plus `environment`, output to `log`.
    public init(_ path: String, _ arguments: [String], environment: [String: String], log: String) throws {
        self.log = log
        logStart = ((try? FileManager.default.attributesOfItem(atPath: log))?[.size] as? NSNumber)?.uint64Value ?? 0
        pid = try Spawn.start(path, arguments, environment: environment, output: log, errors: log, append: true)
    }

    /// The port its HTTP server listens on, for a child told to listen on port 0: the kernel
    /// picks a free one at bind time and the server logs it ("Server started and listening on
    /// HOST:PORT"). A port found free by the test and passed down could be taken by anything
    /// before the child binds it (seen: an Aggregator exiting with "Address already in use").
    /// Throws, with the end of the log, when the child exits first or never listens (then
    /// it is killed and reaped).
    public func listeningPort(within limit: Duration = .seconds(120)) async throws -> Int {
        let deadline = ContinuousClock.now + limit
        while true {
            // Read before asking whether it exited: a line written just before the exit counts.
            let ended = hasExited
            let written = (FileManager.default.contents(atPath: log) ?? Data()).dropFirst(Int(logStart))
            let text = String(decoding: written, as: UTF8.self)
            // Whole lines only: the child may be halfway through writing the last one.
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            if let line = lines.first(where: { $0.contains("Server started and listening on ") }),
                let tail = line.split(separator: "listening on ").last,
                let port = Int(tail.split(separator: ":").last?.prefix(while: \.isNumber) ?? "")
            {
                return port
            }
            guard !ended, ContinuousClock.now < deadline else {
                // Of no use to the test now: not left running (or unreaped) behind it.
                kill(SIGKILL)
                throw ChildProcessFailure(
                    description: "\(log): the child \(ended ? "exited" : "is not listening after \(limit)"); its log ends:\n"
                        + lines.suffix(10).joined(separator: "\n"))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Whether it has exited (it is not reaped: `kill` and `stop` still return its status).
    public var hasExited: Bool {
        var info = siginfo_t()
        return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == pid
    }

    /// Sends `signal`, reaps the process and returns its exit status (128 + signal when killed).
    /// It waits on the caller's thread: for `defer` blocks, and `SIGKILL`, which ends the
    /// process at once; a graceful stop is `stop(_:)`.
    @discardableResult
    public func kill(_ signal: Int32 = SIGKILL) -> Int32 {
        _ = Glibc.kill(pid, signal)
        return Spawn.wait(pid)
    }

    /// Sends `signal` (a graceful stop by default) and waits for the process to finish its
    /// work and exit on a thread of its own (`Spawn.exit(of:)`), not on the cooperative pool;
    /// returns its exit status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM) async -> Int32 {
        _ = Glibc.kill(pid, signal)
        return await Spawn.exit(of: pid)
    }
}

/// posix_spawn and waitpid: Foundation's `Process.waitUntilExit` was seen here never
/// returning for a child that had already exited.
enum Spawn {
    /// Starts `path ARGUMENTS` with the test's environment plus `environment`; standard
    /// output and error go to the given files (the same file may take both), else inherited.
    static func start(
        _ path: String, _ arguments: [String], environment: [String: String] = [:], output: String? = nil,
        errors: String? = nil, append: Bool = false
    ) throws -> pid_t {
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC)
        if let output { posix_spawn_file_actions_addopen(&actions, 1, output, flags, 0o644) }
        // Nothing else of this process goes with the child: descriptors without close-on-exec
        // (a test's spool segment open for writing) would stay open in a child that outlives
        // the test's deleting them, and a full test disk would not get its room back.
        if let closeFrom = Spawn.closeFrom { _ = closeFrom(&actions, 3) }
        if let errors, errors == output {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else if let errors {
            posix_spawn_file_actions_addopen(&actions, 2, errors, flags, 0o644)
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard status == 0 else { throw OpsError(command: path, status: status) }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+; Swift's Glibc module
    /// leaves out the GNU extensions, so it is looked up by name).
    static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Waits for `pid` on a thread of its own and returns its exit status. A test blocked in
    /// `waitpid` on the cooperative pool (two threads on two cores) holds every other
    /// test's tasks: two such waits at once (`rabbitmqctl` takes seconds) stopped the whole
    /// process for a minute.
    public static func exit(of pid: pid_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: wait(pid)) }
        }
    }

    /// Waits for `pid` and returns its exit status (128 + signal when killed).
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
