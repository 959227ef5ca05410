import BlockingIO
import CLibPQ
import Foundation
import Logging

/// One PostgreSQL connection over libpq, confined to a dedicated thread.
///
/// libpq blocks in system calls and a `PGconn` must not be used by two threads at
/// once: as an actor whose executor is one `DedicatedThreadExecutor`, every call runs
/// on that one thread and never occupies Swift's cooperative pool. Statements are
/// synchronous actor methods, so a transaction body (`isolated` to the connection)
/// runs several statements without hopping threads. Only parameterized statements
/// take values: SQL text and data never mix.
///
/// When the server goes away, the failing call throws a `connectionLost` error and
/// the next call reconnects by itself.
public actor PostgresConnection {
    private let executor: DedicatedThreadExecutor
    private let configuration: PostgresConfiguration
    private let logger: Logger
    // Only touched on `executor`'s thread (actor isolation).
    private var handle: OpaquePointer?
    /// Inside `withTransaction` a lost connection must fail the transaction: quietly
    /// reconnecting would run its remaining statements outside it.
    private var inTransaction = false
    /// While `forEachChunk` reads a statement's rows, the connection runs nothing else: a
    /// statement sent by its body would make libpq drop the rest of the rows unseen.
    private var streaming = false

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private init(configuration: PostgresConfiguration, logger: Logger) {
        self.executor = DedicatedThreadExecutor(name: "postgres")
        self.configuration = configuration
        self.logger = logger
    }

    /// Opens a connection; throws `connectionFailed` with libpq's reason if it cannot.
    public static func connect(configuration: PostgresConfiguration, logger: Logger) async throws -> PostgresConnection {
        let connection = PostgresConnection(configuration: configuration, logger: logger)
        try await connection.open()
        return connection
    }

    isolated deinit {
        if let handle { PQfinish(handle) }
        executor.shutdown()
    }

    /// Closes the connection; a later call opens a new one.
    public func close() {
        guard !streaming else { return }  // `forEachChunk` still reads from it
        if let handle { PQfinish(handle) }
        handle = nil
    }

    /// Whether the last call left the connection usable.
    public var isOpen: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    // MARK: Statements

    /// Runs one parameterized statement (`$1`, `$2`, … in `sql`) and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresEncodable] = []) throws(PostgresError) -> PostgresRows {
        let connection = try ready()
        let texts = try Self.texts(of: parameters)
        let result = withCStrings(texts) { values in
            PQexecParams(connection, sql, Int32(texts.count), nil, values, nil, nil, 0)
        }
        defer { PQclear(result) }
        return try rows(of: result, connection: connection)
    }

    /// Runs one parameterized statement and hands its rows to `body` as they arrive, up to
    /// `rowsPerChunk` at a time (libpq's single-row mode): a statement that returns a
    /// hundred thousand rows is never held whole, neither in libpq's result nor as
    /// `PostgresRows` (`query` holds both at once while it copies one into the other).
    ///
    /// The statement can still fail after rows were handed over (a data-modifying statement
    /// returns rows before it has finished): the error is thrown after them, so a caller
    /// that acts on the rows runs inside a transaction the error rolls back. When `body`
    /// throws, the rest of the rows are read and dropped (the connection is usable again)
    /// and its error is rethrown — unless the statement then failed for a lost connection or
    /// a conflict worth retrying, which is thrown instead. `body` runs no statement on this
    /// connection (one would throw): it only takes the rows. Not for COPY.
    public func forEachChunk(
        _ sql: String, _ parameters: [any PostgresEncodable] = [], rowsPerChunk: Int = 1000, _ body: (PostgresRows) throws -> Void
    ) throws {
        let connection = try ready()
        let texts = try Self.texts(of: parameters)
        let sent = withCStrings(texts) { values in
            PQsendQueryParams(connection, sql, Int32(texts.count), nil, values, nil, nil, 0)
        }
        // As `query` has it when libpq could not send (PQexecParams returns no result).
        guard sent == 1 else { throw connectionError(connection, code: .connectionLost) }
        // Were single-row mode refused, the rows would come in the final result: handed
        // over from there, all at once.
        _ = PQsetSingleRowMode(connection)
        streaming = true
        defer { streaming = false }
        var pending: [OpaquePointer] = []
        pending.reserveCapacity(rowsPerChunk)
        var failure: (any Error)?
        var ended = false
        func flush() {
            defer {
                pending.forEach { PQclear($0) }
                pending.removeAll(keepingCapacity: true)
            }
            guard failure == nil, !pending.isEmpty else { return }
            do { try body(Self.copyRows(pending)) } catch { failure = error }
        }
        while let result = PQgetResult(connection) {
            switch PQresultStatus(result) {
            case PGRES_SINGLE_TUPLE:
                pending.append(result)
                if pending.count >= rowsPerChunk { flush() }
                continue
            case PGRES_TUPLES_OK where PQntuples(result) > 0:
                // Single-row mode refused: the rows, whole, after those already pending.
                flush()
                pending.append(result)
                flush()
                ended = true
                continue
            case PGRES_COPY_IN:
                _ = PQputCopyEnd(connection, "forEachChunk does not run COPY")
            case PGRES_COPY_OUT:
                var buffer: UnsafeMutablePointer<CChar>?
                while PQgetCopyData(connection, &buffer, 0) > 0 { PQfreemem(buffer) }
            default:
                break
            }
            // The end of the rows (an empty PGRES_TUPLES_OK), or the statement's error.
            flush()
            defer { PQclear(result) }
            ended = true
            do {
                _ = try rows(of: result, connection: connection)
            } catch {
                // What the connection or the server says wins over the body's refusal: the
                // caller retries a lost connection or a conflict, and refuses the rest.
                if failure == nil || error.isConnectionError || error.isRetryableConflict { failure = error }
            }
        }
        flush()
        if failure == nil, !ended { failure = connectionError(connection, code: .connectionLost) }
        if let failure { throw failure }
    }

    /// Parameters go to libpq as C strings: a NUL would silently cut the value short (an
    /// id stored as its prefix). PostgreSQL's text cannot hold one anyway.
    private static func texts(of parameters: [any PostgresEncodable]) throws(PostgresError) -> [String?] {
        let texts = parameters.map(\.postgresText)
        if let index = texts.firstIndex(where: { $0?.utf8.contains(0) == true }) {
            throw PostgresError(
                .parameter, message: "parameter $\(index + 1) holds a NUL character, which PostgreSQL text cannot store", sqlState: "22021")
        }
        return texts
    }

    /// Runs trusted SQL without parameters, possibly several statements (migrations).
    public func executeScript(_ sql: String) throws(PostgresError) {
        let connection = try ready()
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        _ = try rows(of: result, connection: connection)
    }

    /// Opens a transaction that spans awaits (work between statements, such as calls to
    /// another service): end it with `commit()` or `rollback()`. Until then a lost
    /// connection fails the next statement instead of silently reconnecting outside it.
    public func begin(isolation: IsolationLevel = .readCommitted) throws(PostgresError) {
        try executeScript("BEGIN ISOLATION LEVEL \(isolation.rawValue)")
        inTransaction = true
    }

    /// Commits the transaction `begin()` opened.
    public func commit() throws(PostgresError) {
        defer { inTransaction = false }
        try executeScript("COMMIT")
    }

    /// Rolls back the transaction `begin()` opened; harmless when none is open or the
    /// connection is gone (the server rolled it back).
    public func rollback() {
        if isOpen { try? executeScript("ROLLBACK") }
        inTransaction = false
    }

    /// Runs `body` inside BEGIN … COMMIT, rolling back if it throws.
    @discardableResult
    public func withTransaction<T: Sendable>(
        isolation: IsolationLevel = .readCommitted,
        _ body: @Sendable (isolated PostgresConnection) throws -> T
    ) throws -> T {
        try executeScript("BEGIN ISOLATION LEVEL \(isolation.rawValue)")
        inTransaction = true
        do {
            let value = try body(self)
            try executeScript("COMMIT")
            inTransaction = false
            return value
        } catch {
            if isOpen { try? executeScript("ROLLBACK") }
            inTransaction = false
            throw error
        }
    }

    /// Runs `body` inside a savepoint of the open transaction, so one part of it can fail
    /// without failing the rest: released when `body` returns; rolled back to (and
    /// released) when it throws, and the error rethrown. A lost connection is rethrown
    /// as it is: its transaction is gone with it.
    public func withSavepoint<T>(_ name: String, _ body: (isolated PostgresConnection) throws -> T) throws -> T {
        try executeScript("SAVEPOINT \(name)")
        do {
            let value = try body(self)
            try executeScript("RELEASE SAVEPOINT \(name)")
            return value
        } catch {
            if let error = error as? PostgresError, error.isConnectionError { throw error }
            try executeScript("ROLLBACK TO SAVEPOINT \(name); RELEASE SAVEPOINT \(name)")
            throw error
        }
    }

    /// The isolation levels of `withTransaction`.
    public enum IsolationLevel: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    // MARK: COPY

    /// Streams `rows` into `COPY table (columns) FROM STDIN` in text format and
    /// returns the number of rows copied. Values are escaped (backslash, tab,
    /// newline, carriage return; NULL as `\N`), so any text is data.
    public func copyIn(
        _ sql: String, rows: some Sequence<[any PostgresEncodable]>
    ) throws(PostgresError) -> Int {
        try copyIn(sql, rows: rows, prefix: [])
    }

    private func copyIn(
        _ sql: String, rows: some Sequence<[any PostgresEncodable]>, prefix: [UInt8]
    ) throws(PostgresError) -> Int {
        let connection = try ready()
        let start = PQexec(connection, sql)
        let status = PQresultStatus(start)
        defer { PQclear(start) }
        guard status == PGRES_COPY_IN else {
            _ = try self.rows(of: start, connection: connection)
            throw PostgresError(.copy, message: "the statement did not start COPY FROM STDIN")
        }
        // Rows already in COPY text go from the caller's storage, a chunk at a time: copied
        // into a buffer of ours, a batch's rows (tens of MiB) would be held twice, and libpq
        // grows its output buffer to whatever one call hands it.
        var failure = prefix.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(offset + Self.copyChunk, bytes.count)])
                if let error = send(chunk, connection) { return Optional(error) }
                offset += chunk.count
            }
            return nil
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(Self.copyChunk + 4096)
        for row in rows where failure == nil {
            CopyTextFormat.append(row, to: &buffer)
            if buffer.count >= Self.copyChunk {
                if let error = send(&buffer, connection) {
                    failure = error
                    break
                }
            }
        }
        if failure == nil, !buffer.isEmpty { failure = send(&buffer, connection) }
        _ = PQputCopyEnd(connection, failure == nil ? nil : "client failed while sending rows")
        var copied = 0
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            do {
                copied = try self.rows(of: result, connection: connection).affectedRows
            } catch {
                failure = failure ?? error
            }
        }
        if let failure { throw failure }
        return copied
    }

    /// Streams rows already in COPY text form (see `CopyTextWriter`) into
    /// `COPY table (columns) FROM STDIN` and returns the number of rows copied.
    public func copyIn(_ sql: String, text: [UInt8]) throws(PostgresError) -> Int {
        try copyIn(sql, rows: EmptyCollection<[any PostgresEncodable]>(), prefix: text)
    }

    private static let copyChunk = 256 * 1024

    private func send(_ buffer: inout [UInt8], _ connection: OpaquePointer) -> PostgresError? {
        let failure = buffer.withUnsafeBytes { send($0, connection) }
        buffer.removeAll(keepingCapacity: true)
        return failure
    }

    private func send(_ bytes: UnsafeRawBufferPointer, _ connection: OpaquePointer) -> PostgresError? {
        let sent = PQputCopyData(connection, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count))
        return sent == 1 ? nil : connectionError(connection, code: .copy)
    }

    // MARK: Connection state

    private func open() throws(PostgresError) {
        OpenSSLAtExit.keepUntilProcessExit()
        let keywords = configuration.keywords
        let connection = withCStrings(keywords.map(\.0)) { names in
            withCStrings(keywords.map(\.1)) { values in
                PQconnectdbParams(names, values, 0)
            }
        }
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            let reason = connection.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let connection { PQfinish(connection) }
            logger.warning("postgres connect failed", metadata: ["db.target": "\(configuration)"])
            throw PostgresError(.connectionFailed, message: reason)
        }
        // Notices (e.g. "relation already exists, skipping") go to our logs, not stderr.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        handle = connection
    }

    /// The live handle, reconnecting first if the last call found the server gone.
    private func ready() throws(PostgresError) -> OpaquePointer {
        if streaming {
            throw PostgresError(.protocolViolation, message: "a statement was sent while forEachChunk was still reading rows")
        }
        if let handle, PQstatus(handle) == CONNECTION_OK, !Self.wasClosedWhileIdle(handle) { return handle }
        if inTransaction {
            throw PostgresError(.connectionLost, message: "the connection was lost inside a transaction; nothing of it was committed")
        }
        if let handle {
            PQfinish(handle)
            self.handle = nil
            logger.info("reconnecting to postgres", metadata: ["db.target": "\(configuration)"])
        }
        try open()
        guard let handle else { throw PostgresError(.connectionFailed, message: "no connection") }
        return handle
    }

    /// Whether the server closed this idle connection (a restart, an idle timeout).
    /// Between statements nothing should arrive on the socket (we never LISTEN), so
    /// anything readable is the server's goodbye or EOF, and the connection is
    /// replaced. Checked before every statement, so the first call after a restart
    /// reconnects instead of failing; it costs one poll(2) with a zero timeout.
    private static func wasClosedWhileIdle(_ handle: OpaquePointer) -> Bool {
        var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) != 0
    }

    private func rows(of result: OpaquePointer?, connection: OpaquePointer) throws(PostgresError) -> PostgresRows {
        guard let result else { throw connectionError(connection, code: .connectionLost) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_COPY_IN:
            return Self.copyRows(result)
        case PGRES_FATAL_ERROR where PQstatus(connection) != CONNECTION_OK:
            throw connectionError(connection, code: .connectionLost, result: result)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR:
            throw Self.serverError(result)
        default:
            throw PostgresError(.protocolViolation, message: String(cString: PQresStatus(PQresultStatus(result))))
        }
    }

    private func connectionError(
        _ connection: OpaquePointer, code: PostgresError.Code, result: OpaquePointer? = nil
    ) -> PostgresError {
        let sqlState = result.flatMap { Self.field($0, "C") }
        return PostgresError(code, message: String(cString: PQerrorMessage(connection)), sqlState: sqlState)
    }

    private static func serverError(_ result: OpaquePointer) -> PostgresError {
        PostgresError(
            .server,
            message: field(result, "M") ?? String(cString: PQresultErrorMessage(result)),
            sqlState: field(result, "C"),
            detail: field(result, "D"),
            constraint: field(result, "n"))
    }

    private static func field(_ result: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        PQresultErrorField(result, Int32(code.value)).map { String(cString: $0) }
    }

    private static func copyRows(_ result: OpaquePointer) -> PostgresRows {
        copyRows(CollectionOfOne(result))
    }

    /// The rows of `results` (of one statement: the same columns) one after the other, as
    /// one `PostgresRows`; the affected rows are the last result's.
    private static func copyRows(_ results: some BidirectionalCollection<OpaquePointer>) -> PostgresRows {
        guard let first = results.first else { return PostgresRows(columns: [], storage: .empty, affectedRows: 0) }
        let columnCount = PQnfields(first)
        let columns = (0..<columnCount).map { String(cString: PQfname(first, $0)) }
        let rowCount = results.reduce(0) { $0 + Int(PQntuples($1)) }
        let cells = rowCount * Int(columnCount)
        var lengths: [Int32] = []
        var starts: [Int] = []
        lengths.reserveCapacity(cells)
        starts.reserveCapacity(cells)
        var total = 0
        for result in results {
            for row in 0..<PQntuples(result) {
                for column in 0..<columnCount {
                    starts.append(total)
                    if PQgetisnull(result, row, column) == 1 {
                        lengths.append(-1)
                    } else {
                        let length = PQgetlength(result, row, column)
                        lengths.append(length)
                        total += Int(length)
                    }
                }
            }
        }
        let bytes = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: total)
        do {
            let buffer = bytes
            var cell = 0
            for result in results {
                for row in 0..<PQntuples(result) {
                    for column in 0..<columnCount {
                        defer { cell += 1 }
                        let length = Int(lengths[cell])
                        guard length > 0, let value = PQgetvalue(result, row, column) else { continue }
                        UnsafeMutableRawPointer(buffer.baseAddress! + starts[cell]).copyMemory(from: value, byteCount: length)
                    }
                }
            }
        }
        let affected = results.last.flatMap { Int(String(cString: PQcmdTuples($0))) } ?? 0
        let storage = PostgresRows.Storage(
            rowCount: rowCount, columnCount: Int(columnCount), bytes: bytes, starts: starts, lengths: lengths)
        return PostgresRows(columns: columns, storage: storage, affectedRows: affected)
    }
}

/// Calls `body` with a NULL-terminated C array of C strings (NULL entries for nil)
/// that stay valid for the duration of the call.
func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let storage: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { storage.forEach { free($0) } }
    return body(storage.map { $0.map { UnsafePointer($0) } } + [nil])
}
