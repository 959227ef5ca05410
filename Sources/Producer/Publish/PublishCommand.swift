import ArgumentParser
import CurlClient
import Foundation
import TallyRuntime

/// `producer publish FILE|-`: sends NDJSON usage events to the ingest service in
/// batches, showing progress on a terminal, and exits non-zero if any was refused.
struct PublishCommand: AsyncParsableCommand {
    static let ingestURL = ConfigurationKey(
        "TALLY_INGEST_URL", summary: "the ingest service, e.g. http://127.0.0.1:8080", default: "http://127.0.0.1:8080")
    static let apiKey = ConfigurationKey(
        "TALLY_API_KEY", summary: "a tenant API key (or use BILLING_ADMIN_TOKEN for any tenant)", isSecret: true,
        isOptional: true)

    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Send NDJSON usage events (one per line) from a file or standard input.",
        discussion: ConfigurationReport.helpText([ingestURL, apiKey, ProducerConfiguration.adminToken])
            + "\n\nA refused batch is reported with every offending line's field; accepted batches stay accepted."
            + " Exit status: 0 when every event was accepted, 1 otherwise."
    )

    @Argument(help: "NDJSON file to send, or - for standard input.") var file: String
    @Option(help: "Events per request (at most 1000 keeps each AMQP message whole).") var batchSize = 1000
    @Option(help: "Attempts per batch when the service is unavailable (503) or unreachable.") var attempts = 5

    func validate() throws {
        // The ingest takes at most 10,000 events a request: more was refused whole (413), every batch.
        guard (1...IngestBody.maximumEvents).contains(batchSize) else {
            throw ValidationError("--batch-size must be 1 to 10000 (the most events one request may carry)")
        }
        guard (1...100).contains(attempts) else { throw ValidationError("--attempts must be 1 to 100") }
        // Here, not in run(): a usage error thrown there printed the root command's usage.
        if file != "-" { fclose(try Self.open(file)) }
    }

    /// `path` opened for reading: a file, not a directory (which `fopen` opens, and reads as empty).
    static func open(_ path: String) throws -> UnsafeMutablePointer<FILE> {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ValidationError("\(path) is a directory: name an NDJSON file")
        }
        guard let file = fopen(path, "r") else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
        return file
    }

    func run() async throws {
        let reader = ConfigurationReader()
        guard let token = reader.optionalString(Self.apiKey) ?? reader.optionalString(ProducerConfiguration.adminToken) else {
            throw ValidationError("set TALLY_API_KEY (a tenant key) or BILLING_ADMIN_TOKEN")
        }
        let endpoint = try reader.string(Self.ingestURL) + "/v1/events"
        guard let input = file == "-" ? fdopen(STDIN_FILENO, "r") : try Self.open(file) else {
            throw ValidationError("cannot read standard input: \(String(cString: strerror(errno)))")
        }
        defer { fclose(input) }
        var progress = PublishProgress()
        let sender = IngestSender(endpoint: endpoint, token: token, client: try HTTPClient(), attempts: attempts)
        var lines: [String] = []
        // The file's number of the batch's first line (blank lines are skipped, not sent).
        var firstLine = 0
        var lineNumber = 0
        while let line = Self.readLine(input) {
            lineNumber += 1
            if line.allSatisfy(\.isWhitespace) { continue }
            if lines.isEmpty { firstLine = lineNumber }
            lines.append(line)
            if lines.count == batchSize {
                try await sender.send(lines, firstLine: firstLine, progress: &progress)
                lines.removeAll(keepingCapacity: true)
            }
        }
        if !lines.isEmpty {
            try await sender.send(lines, firstLine: firstLine, progress: &progress)
        }
        progress.finish()
        if progress.refused + progress.notSent > 0 { throw ExitCode(1) }
    }

    static func readLine(_ file: UnsafeMutablePointer<FILE>) -> String? {
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        let length = getline(&buffer, &capacity, file)
        guard length >= 0, let buffer else { return nil }
        return String(cString: buffer).trimmingCharacters(in: .newlines)
    }
}

/// Sends batches of NDJSON lines to `POST /v1/events`, retrying a batch (the same lines,
/// so the same ids) while the service is unavailable or unreachable.
struct IngestSender {
    let endpoint: String
    let token: String
    let client: HTTPClient
    let attempts: Int

    func send(_ lines: [String], firstLine: Int, progress: inout PublishProgress) async throws {
        let request = HTTPClient.Request(
            method: .post, url: endpoint,
            headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/x-ndjson"],
            body: Data((lines.joined(separator: "\n") + "\n").utf8), timeout: .seconds(60))
        var delay = Duration.milliseconds(500)
        var lastProblem = "service unreachable"
        for attempt in 1...attempts {
            if attempt > 1 {
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
            let response: HTTPClient.Response
            do {
                response = try await client.send(request)
            } catch {
                lastProblem = "\(endpoint) unreachable (TALLY_INGEST_URL): \(error)"
                progress.note("batch at line \(firstLine): \(lastProblem)" + (attempt < attempts ? "; retrying" : ""))
                continue
            }
            if response.status == 202 {
                progress.accepted(lines.count)
                return
            }
            let retryable = response.status == 503 || response.status == 429
            if !retryable {
                progress.refused(lines.count, firstLine: firstLine, status: response.status, body: response.body)
                return
            }
            lastProblem = "HTTP \(response.status)"
        }
        progress.notSent(lines.count, firstLine: firstLine, problem: lastProblem)
    }
}

/// Counts and, on a terminal, a one-line progress display on standard error.
struct PublishProgress {
    private(set) var sent = 0
    private(set) var refused = 0
    /// Events never answered for (the ingest unreachable, silent or unavailable through
    /// every attempt): not refused for their content, so sending them again is the fix.
    private(set) var notSent = 0
    private let started = ContinuousClock.now
    private let isTerminal = isatty(STDERR_FILENO) == 1

    mutating func accepted(_ count: Int) {
        sent += count
        redraw()
    }

    mutating func refused(_ count: Int, firstLine: Int, status: Int, body: Data) {
        refused += count
        let reason = String(decoding: body.prefix(2000), as: UTF8.self)
        note("\(count) event(s) from line \(firstLine) refused (HTTP \(status)): \(reason)")
    }

    mutating func notSent(_ count: Int, firstLine: Int, problem: String) {
        notSent += count
        note("\(count) event(s) from line \(firstLine) not sent: \(problem)")
    }

    func note(_ text: String) {
        if isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        FileHandle.standardError.write(Data((text + "\n").utf8))
        redraw()
    }

    private var rate: Int {
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        return seconds > 0 ? Int(Double(sent) / seconds) : 0
    }

    private func redraw() {
        guard isTerminal else { return }
        FileHandle.standardError.write(
            Data("\r\u{1B}[K  \(sent) accepted, \(refused) refused, \(notSent) not sent, \(rate) events/s".utf8))
    }

    func finish() {
        if isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let seconds = Double((ContinuousClock.now - started) / .milliseconds(1)) / 1000
        var summary = "published \(sent + refused + notSent) events: \(sent) accepted, \(refused) refused"
        if notSent > 0 { summary += ", \(notSent) not sent" }
        print(summary + ", in \(String(format: "%.1f", seconds)) s")
        if notSent > 0 {
            print(
                "\(notSent) event(s) were not sent: the ingest did not answer or stayed unavailable. Publish the file again "
                    + "once it answers (events already accepted are counted once, by their ids)")
        }
    }
}
