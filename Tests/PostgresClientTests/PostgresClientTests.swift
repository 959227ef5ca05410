import CivilTime
import Foundation
import Logging
import PostgresClient
import TallyTestSupport
import Testing

/// Against the real PostgreSQL that `./ops/local.sh up` starts.
@Suite("PostgreSQL client")
struct PostgresClientTests {
    let logger = Logger(label: "test.postgres")

    func pool(size: Int = 2) throws -> PostgresPool {
        PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: size, logger: logger)
    }

    /// A table of our own for one test, dropped afterwards.
    func withTable<T: Sendable>(
        _ columns: String, _ body: @Sendable (PostgresPool, String) async throws -> T
    ) async throws -> T {
        let pool = try pool()
        let table = "test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        try await pool.query("CREATE TABLE \(table) (\(columns))")
        do {
            let result = try await body(pool, table)
            try await pool.query("DROP TABLE \(table)")
            return result
        } catch {
            _ = try? await pool.query("DROP TABLE \(table)")
            throw error
        }
    }

    @Test("every supported type round-trips exactly")
    func roundTrip() async throws {
        let pool = try pool()
        let id = UUID()
        let instant = PostgresTimestamp(microsecondsSinceEpoch: 1_795_459_200_123_456)
        let rows = try await pool.query(
            """
            SELECT $1::text, $2::bigint, $3::int, $4::numeric(17,4), $5::numeric(38,4), $6::uuid,
                   $7::timestamptz, $8::jsonb, $9::bool, $10::text, $11::bytea, $12::numeric
            """,
            [
                "it's; DROP TABLE x --", Int64.max, Int32.min, Decimal(string: "123456789012.3456")!,
                Decimal(string: "12345678901234567890123456789012.0001")!, id, instant,
                PostgresJSON(text: #"{"b": [1, 2.50], "a": "é"}"#), true, String?.none,
                Data([0, 1, 0xFE, 0xFF]), Decimal(string: "0.0001")!,
            ])
        let row = try #require(rows.first)
        #expect(try row.decode(0, as: String.self) == "it's; DROP TABLE x --")
        #expect(try row.decode(1, as: Int64.self) == Int64.max)
        #expect(try row.decode(2, as: Int32.self) == Int32.min)
        #expect(try row.decode(3, as: Decimal.self) == Decimal(string: "123456789012.3456")!)
        #expect(row.text(4) == "12345678901234567890123456789012.0001")
        #expect(try row.decode(5, as: UUID.self) == id)
        #expect(try row.decode(6, as: PostgresTimestamp.self) == instant)
        #expect(try row.decode(7, as: PostgresJSON.self).text == #"{"a": "é", "b": [1, 2.50]}"#)
        #expect(try row.decode(8, as: Bool.self) == true)
        #expect(try row.decode(9, as: String?.self) == nil)
        #expect(try row.decode(10, as: Data.self) == Data([0, 1, 0xFE, 0xFF]))
        #expect(try row.decode(11, as: Decimal.self) == Decimal(string: "0.0001")!)
    }

    @Test("text arrays reach PostgreSQL element for element: quotes, backslashes, commas, braces, NULL as text, Unicode")
    func textArrays() async throws {
        let pool = try pool()
        let elements = ["plain", "with \"quotes\"", "back\\slash\\", "a,b", "{braces}", "NULL", "", " spaced ", "é中🎉", "\\\""]
        let rows = try await pool.query(
            "SELECT e, o FROM unnest($1::text[]) WITH ORDINALITY AS u (e, o) ORDER BY o", [PostgresTextArray(elements)])
        #expect(try rows.map { try $0.decode(0, as: String.self) } == elements)
    }

    @Test("timestamptz is read in UTC whatever offset it was written with")
    func timestampOffsets() async throws {
        let pool = try pool()
        let rows = try await pool.query(
            "SELECT '2026-11-24 23:40:00.5+05:30'::timestamptz, '1969-12-31 23:59:59.999999Z'::timestamptz, '2028-02-29T00:00:00Z'::timestamptz")
        let row = try #require(rows.first)
        #expect(try row.decode(0, as: PostgresTimestamp.self).description == "2026-11-24T18:10:00.500000Z")
        #expect(try row.decode(1, as: PostgresTimestamp.self).microsecondsSinceEpoch == -1)
        #expect(try row.decode(2, as: PostgresTimestamp.self).description == "2028-02-29T00:00:00.000000Z")
    }

    @Test("a year past 9999, as PostgreSQL writes it (five or six digits), is read; garbage is still refused")
    func yearsPast9999() async throws {
        let pool = try pool()
        let rows = try await pool.query(
            "SELECT '10000-01-15 00:00:00+00'::timestamptz, '123456-03-01 12:00:00.25+00'::timestamptz, '9999-12-31 23:59:59.999999+00'::timestamptz")
        let row = try #require(rows.first)
        // 10000-01-01T00:00:00Z is 253,402,300,800 s after the epoch; the 15th is 14 days on.
        #expect(try row.decode(0, as: Date.self) == Date(timeIntervalSince1970: 253_402_300_800 + 14 * 86_400))
        let days = CivilDate(year: 123_456, month: 3, day: 1).daysSinceEpoch
        #expect(try row.decode(1, as: PostgresTimestamp.self).microsecondsSinceEpoch == (days * 86_400 + 12 * 3600) * 1_000_000 + 250_000)
        #expect(try row.decode(2, as: PostgresTimestamp.self).microsecondsSinceEpoch == 253_402_300_800_000_000 - 1)
        for text in [
            "1000-1-15 00:00:00+00", "10000", "abcd-01-01 00:00:00+00", "294248-01-01 00:00:00+00", "294247-12-31 23:59:59.999999-14",
            "2000-01-01 00:00:00+00 BC",
        ] {
            #expect((try? PostgresTimestamp(postgresText: text)) == nil, "\(text)")
        }
        // PostgreSQL's last instant is past Int64's microseconds: an error to decode, not a trap.
        let last = try #require(try await pool.query("SELECT '294276-12-31 23:59:59+00'::timestamptz").first)
        #expect(throws: (any Error).self) { try last.decode(0, as: PostgresTimestamp.self) }
        #expect(throws: (any Error).self) { try last.decode(0, as: Date.self) }
        // A year before 1 AD is not read as the same year AD.
        let bc = try #require(try await pool.query("SELECT '0044-03-15 00:00:00+00 BC'::timestamptz").first)
        #expect(throws: (any Error).self) { try bc.decode(0, as: Date.self) }
    }

    @Test("session settings reach every session, with UTC kept and the URL's own options kept beside them")
    func sessionSettings() async throws {
        var configuration = try PostgresConfiguration(url: TestEnvironment.databaseURL + "?options=-c%20work_mem%3D8MB")
        configuration.sessionSettings = ["synchronous_commit": "off"]
        let connection = try await PostgresConnection.connect(configuration: configuration, logger: logger)
        let row = try #require(
            try await connection.query("SELECT current_setting('synchronous_commit'), current_setting('TimeZone'), current_setting('work_mem')").first
        )
        #expect(row.text(0) == "off" && row.text(1) == "UTC" && row.text(2) == "8MB")
        await connection.close()
        // A reconnection (after close) opens with the same settings.
        #expect(try await connection.query("SHOW synchronous_commit").first?.text(0) == "off")
        // PostgreSQL's JIT is off unless the URL asks for it.
        #expect(try await connection.query("SHOW jit").first?.text(0) == "off")
        await connection.close()
        let asked = try PostgresConfiguration(url: TestEnvironment.databaseURL + "?options=-c%20jit%3Don")
        let jit = try await PostgresConnection.connect(configuration: asked, logger: logger)
        #expect(try await jit.query("SHOW jit").first?.text(0) == "on")
        await jit.close()
    }

    @Test("a NULL or a wrong type is a decoding error naming the column")
    func decodingErrors() async throws {
        let rows = try await pool().query("SELECT NULL::int AS missing, 'x'::text AS word")
        let row = try #require(rows.first)
        let null = #expect(throws: PostgresError.self) { try row.decode("missing", as: Int.self) }
        #expect(null?.code == .decoding)
        #expect(null?.message.contains("missing") == true)
        let mismatch = #expect(throws: PostgresError.self) { try row.decode("word", as: Int.self) }
        #expect(mismatch?.message.contains("word") == true)
    }

    @Test("values parsed from the result's bytes equal those parsed from their text, across many rows, NULLs and bounds")
    func bytesAgainstText() async throws {
        // Integers to both bounds, uuids, timestamps with offsets and fractions, empty and
        // NULL values in many rows: each column read from the bytes (`decode`) equals the
        // reference parse of its text (`init(postgresText:)` on `text(_:)`).
        let rows = try await pool().query(
            """
            SELECT g, (g * 7919 - 50000)::bigint * 184467440737 AS big, gen_random_uuid() AS id,
                   timestamptz '2026-02-28 23:59:59.999999+00' + g * interval '1 hour 17 minutes 0.000123 seconds' AS at,
                   CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('é', g % 5) END AS word,
                   CASE WHEN g % 4 = 0 THEN NULL ELSE g END AS sometimes
              FROM generate_series(-2000, 2000) AS g
            UNION ALL
            SELECT 0, 9223372036854775807, '00000000-0000-0000-0000-000000000000', '0001-01-01 00:00:00+00', '', -2147483648
            UNION ALL
            SELECT 0, -9223372036854775808, 'ffffffff-ffff-ffff-ffff-ffffffffffff', '9999-12-31 23:59:59.999999+00', NULL, NULL
            """)
        #expect(rows.count == 4_003)
        for row in rows {
            #expect(try row.decode(0, as: Int.self) == Int(postgresText: row.text(0)!))
            #expect(try row.decode(1, as: Int64.self) == Int64(postgresText: row.text(1)!))
            #expect(try row.decode(2, as: UUID.self) == UUID(uuidString: row.text(2)!))
            #expect(try row.decode(3, as: PostgresTimestamp.self) == PostgresTimestamp(postgresText: row.text(3)!))
            #expect(try row.decode(3, as: Date.self) == Date(postgresText: row.text(3)!))
            #expect(try row.decode(4, as: String?.self) == row.text(4))
            #expect(try row.decode(5, as: Int?.self) == row.text(5).map { Int($0)! })
        }
        // Malformed or out of range: refused from the bytes, as from the text.
        let odd = try #require(
            try await pool().query(
                "SELECT '9223372036854775808' AS over, '-' AS minus, '12a' AS letters, '' AS empty, '+1' AS plus, 'not-a-uuid' AS id"
            ).first)
        for column in 0..<5 {
            #expect(throws: PostgresError.self) { try odd.decode(column, as: Int64.self) }
        }
        #expect(throws: PostgresError.self) { try odd.decode(5, as: UUID.self) }
        #expect(throws: PostgresError.self) { try odd.decode(5, as: Date.self) }
    }

    @Test("rows read a chunk at a time as they arrive are the rows the whole result holds, in order, in chunks of the size asked")
    func chunksAgainstWhole() async throws {
        let sql = """
            SELECT g, gen_random_uuid() AS id, CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('é', g % 7) END AS word,
                   timestamptz '2026-02-28 23:59:59.999999+00' + g * interval '1 minute' AS at
              FROM generate_series(1, 4003) AS g ORDER BY g
            """
        let pool = try pool()
        let whole = try await pool.query(sql)
        let (sizes, texts) = try await pool.withTransaction { connection in
            var sizes: [Int] = []
            var texts: [[String?]] = []
            try connection.forEachChunk(sql, rowsPerChunk: 1000) { rows in
                sizes.append(rows.count)
                #expect(rows.columns == ["g", "id", "word", "at"])
                texts += rows.map { row in (0..<4).map { row.text($0) } }
            }
            return (sizes, texts)
        }
        #expect(sizes == [1000, 1000, 1000, 1000, 3])
        #expect(texts.map { $0[0] } == whole.map { $0.text(0) })
        #expect(texts.map { $0[2] } == whole.map { $0.text(2) })
        #expect(texts.map { $0[3] } == whole.map { $0.text(3) })
        #expect(Set(texts.map { $0[1] }).count == 4003)
        // No rows: the body is never called.
        let calls = try await pool.withTransaction { connection in
            var calls = 0
            try connection.forEachChunk("SELECT 1 WHERE $1::bool", [false]) { _ in calls += 1 }
            return calls
        }
        #expect(calls == 0)
    }

    @Test(
        "a statement failing after some of its rows were read a chunk at a time throws after them, its transaction stores nothing, and the connection goes on"
    )
    func chunksThenFailure() async throws {
        try await withTable("id int PRIMARY KEY") { pool, table in
            // Rows 1…4,999 are sent (the server flushes its output every 8 KiB) before row
            // 5,000 divides by zero and fails the statement, and the transaction with it.
            let read = ReadCount()
            await #expect {
                try await pool.withTransaction { connection in
                    try connection.query("INSERT INTO \(table) SELECT g FROM generate_series(1, 5000) AS g")
                    try connection.forEachChunk("SELECT id, 10 / (5000 - id) FROM \(table)", rowsPerChunk: 100) { rows in
                        read.add(rows.count)
                    }
                }
            } throws: { ($0 as? PostgresError)?.sqlState == "22012" }
            #expect(read.value > 0 && read.value < 5000, "rows before the error: \(read.value)")
            #expect(try await pool.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self) == 0)
            // A body that throws: its error, the rest of the rows read and dropped, the
            // connection usable for the next statement in the same transaction.
            struct Enough: Error {}
            let after = try await pool.withTransaction { connection in
                var chunks = 0
                #expect(throws: Enough.self) {
                    try connection.forEachChunk("SELECT g FROM generate_series(1, 10000) AS g", rowsPerChunk: 10) { _ in
                        chunks += 1
                        if chunks == 2 { throw Enough() }
                    }
                }
                #expect(chunks == 2)
                // A body that sends a statement of its own on the connection: refused (libpq
                // would drop the rows still to come), the rows drained, the connection usable.
                #expect {
                    try connection.forEachChunk("SELECT g FROM generate_series(1, 5000) AS g", rowsPerChunk: 10) { _ in
                        try connection.query("SELECT 1")
                    }
                } throws: { ($0 as? PostgresError)?.code == .protocolViolation }
                try connection.query("INSERT INTO \(table) VALUES (7)")
                return try connection.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self)
            }
            #expect(after == 1)
        }
    }

    /// Rows counted by a chunk body in a `@Sendable` transaction.
    final class ReadCount: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add(_ rows: Int) { lock.withLock { count += rows } }
        var value: Int { lock.withLock { count } }
    }

    @Test("a rolled-back transaction leaves nothing")
    func rollback() async throws {
        try await withTable("id int PRIMARY KEY") { pool, table in
            struct Abort: Error {}
            await #expect(throws: Abort.self) {
                try await pool.withTransaction { connection in
                    try connection.query("INSERT INTO \(table) VALUES (1), (2)")
                    throw Abort()
                }
            }
            let count = try await pool.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self)
            #expect(count == 0)
            try await pool.withTransaction { connection in try connection.query("INSERT INTO \(table) VALUES (3)") }
            #expect(try await pool.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self) == 1)
        }
    }

    @Test("COPY loads 100,000 rows, escaping tabs, newlines, backslashes and NULLs")
    func copy() async throws {
        try await withTable("id bigint PRIMARY KEY, label text, amount numeric(17,4)") { pool, table in
            let awkward = ["tab\there", "line\nbreak", "back\\slash", "cr\rreturn", "\\N", ""]
            let rows: [[any PostgresEncodable]] = (1...100_000).map { id in
                [Int64(id), id % 7 == 0 ? String?.none : awkward[id % awkward.count], Decimal(id) / 10_000]
            }
            let copied = try await pool.withConnection { connection in
                try await connection.copyIn("COPY \(table) (id, label, amount) FROM STDIN", rows: rows)
            }
            #expect(copied == 100_000)
            let summary = try await pool.query(
                "SELECT count(*), sum(id), sum(amount), count(*) FILTER (WHERE label IS NULL) FROM \(table)")[0]
            #expect(try summary.decode(0, as: Int.self) == 100_000)
            #expect(try summary.decode(1, as: Int64.self) == 5_000_050_000)
            #expect(try summary.decode(2, as: Decimal.self) == Decimal(string: "500005.0000")!)
            #expect(try summary.decode(3, as: Int.self) == 100_000 / 7)
            let labels = try await pool.query("SELECT id, label FROM \(table) WHERE id <= 6 ORDER BY id")
            for row in labels {
                let id = try row.decode(0, as: Int.self)
                #expect(try row.decode(1, as: String.self) == awkward[id % awkward.count])
            }
        }
    }

    @Test("COPY of rows already in COPY text, many chunks long and cut mid-row between chunks, loads every row once")
    func copyText() async throws {
        try await withTable("id bigint PRIMARY KEY, label text") { pool, table in
            var writer = CopyTextWriter()
            var expectedLength = 0
            for id in 1...200_000 {
                // Labels of varied lengths, so chunk ends fall anywhere in a row.
                let label = String(repeating: "x", count: id % 23) + "\t\(id)"
                expectedLength += label.count
                writer.field(String(id))
                writer.field(label)
                writer.endRow()
            }
            let text = writer.buffer
            #expect(text.count > 8 * 256 * 1024)  // several of copyIn's chunks
            let copied = try await pool.withConnection { connection in
                try await connection.copyIn("COPY \(table) (id, label) FROM STDIN", text: text)
            }
            #expect(copied == 200_000)
            let summary = try await pool.query("SELECT count(*), sum(id), sum(length(label)) FROM \(table)")[0]
            #expect(try summary.decode(0, as: Int.self) == 200_000)
            #expect(try summary.decode(1, as: Int64.self) == 20_000_100_000)
            #expect(try summary.decode(2, as: Int.self) == expectedLength)
        }
    }

    @Test("COPY of a bad row fails and loads nothing")
    func copyFailure() async throws {
        try await withTable("id bigint PRIMARY KEY") { pool, table in
            let rows: [[any PostgresEncodable]] = [[Int64(1)], ["not a number"]]
            let error = await #expect(throws: PostgresError.self) {
                try await pool.withConnection { connection in
                    try await connection.copyIn("COPY \(table) (id) FROM STDIN", rows: rows)
                }
            }
            #expect(error?.sqlState == "22P02")
            let count = try await pool.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self)
            #expect(count == 0)
        }
    }

    @Test("a unique or check violation carries its SQLSTATE and constraint; neither description nor the logged form quotes the row")
    func uniqueViolation() async throws {
        try await withTable("id text PRIMARY KEY, url text CHECK (url ~ '^https?://')") { pool, table in
            try await pool.query("INSERT INTO \(table) VALUES ($1, 'http://a')", ["secret-value"])
            let error = await #expect(throws: PostgresError.self) {
                try await pool.query("INSERT INTO \(table) VALUES ($1, 'http://a')", ["secret-value"])
            }
            #expect(error?.isUniqueViolation == true)
            #expect(error?.constraint == "\(table)_pkey")
            #expect(error?.detail?.contains("secret-value") == true)  // for the code that handles it
            #expect(error.map { String(describing: $0) }?.contains("secret-value") == false)
            // What logs print (String(reflecting:)): the constraint, not the key's value (it
            // quoted a webhook's signing secret in "Failing row contains (…)").
            #expect(error.map { String(reflecting: $0) }?.contains("secret-value") == false)
            #expect(error.map { String(reflecting: $0) }?.contains("\(table)_pkey") == true)
            let check = await #expect(throws: PostgresError.self) {
                try await pool.query("INSERT INTO \(table) VALUES ($1, 'HTTP://a')", ["whsec_other-secret"])
            }
            #expect(check?.sqlState == "23514")
            #expect(check.map { String(reflecting: $0) }?.contains("whsec_other-secret") == false)
            #expect(check.map { String(reflecting: $0) }?.contains("\(table)_url_check") == true)
        }
    }

    @Test("a syntax error is SQLSTATE 42601")
    func syntaxError() async throws {
        let error = await #expect(throws: PostgresError.self) { try await pool().query("SELEC 1") }
        #expect(error?.code == .server)
        #expect(error?.sqlState == "42601")
    }

    /// Waits until the server no longer lists backend `pid` (terminations are asynchronous).
    func waitUntilGone(_ pid: Int, admin: PostgresPool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while try await admin.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [pid])[0].decode(0, as: Int.self) > 0 {
            try #require(ContinuousClock.now < deadline, "backend \(pid) never went away")
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("a backend terminated while idle is noticed before the next call, which reconnects and succeeds")
    func reconnectIdle() async throws {
        let pool = try pool(size: 1)
        let admin = try self.pool(size: 1)
        let pid = try await pool.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        try await admin.query("SELECT pg_terminate_backend($1)", [pid])
        try await waitUntilGone(pid, admin: admin)
        let newPID = try await pool.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        #expect(newPID != pid)
    }

    @Test("a backend terminated mid-statement is a connection error, and the next call reconnects")
    func reconnectMidStatement() async throws {
        let pool = try pool(size: 1)
        let admin = try self.pool(size: 1)
        let pid = try await pool.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        let slow = Task { try await pool.query("SELECT pg_sleep(30)") }
        let deadline = ContinuousClock.now + .seconds(30)
        while try await admin.query(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'", [pid]
        )[0].decode(0, as: Int.self) == 0 {
            try #require(ContinuousClock.now < deadline, "the slow statement never started")
            try await Task.sleep(for: .milliseconds(20))
        }
        try await admin.query("SELECT pg_terminate_backend($1)", [pid])
        let error = await #expect(throws: PostgresError.self) { try await slow.value }
        #expect(error?.isConnectionError == true)
        let newPID = try await pool.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        #expect(newPID != pid)
    }

    @Test("a connection lost inside a transaction fails it instead of reconnecting into autocommit")
    func lostInsideTransaction() async throws {
        let pool = try pool(size: 1)
        let admin = try self.pool(size: 1)
        try await withTable("n int") { _, table in
            let pid = try await pool.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
            let error = await #expect(throws: PostgresError.self) {
                try await pool.withConnection { connection in
                    try await connection.withTransaction { connection in
                        try connection.query("INSERT INTO \(table) VALUES (1)")
                        // Terminate this backend from another session and wait until it is gone.
                        let semaphore = DispatchSemaphore(value: 0)
                        Task {
                            _ = try? await admin.query("SELECT pg_terminate_backend($1)", [pid])
                            try? await waitUntilGone(pid, admin: admin)
                            semaphore.signal()
                        }
                        semaphore.wait()
                        try connection.query("INSERT INTO \(table) VALUES (2)")
                    }
                }
            }
            #expect(error?.isConnectionError == true)
            #expect(try await pool.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self) == 0)
        }
    }

    @Test("a wrong password fails to connect with a connection error")
    func wrongPassword() async throws {
        var configuration = try PostgresConfiguration(url: TestEnvironment.databaseURL)
        configuration.password = "wrong"
        let error = await #expect(throws: PostgresError.self) {
            try await PostgresConnection.connect(configuration: configuration, logger: logger)
        }
        #expect(error?.code == .connectionFailed)
        #expect(error.map { String(describing: $0) }?.contains("wrong") == false)
        // libpq's reason, which says what to fix (it was "PostgresError(connectionFailed)").
        #expect(error.map { String(describing: $0) }?.contains("password authentication failed") == true, "\(String(describing: error))")
    }

    @Test("DATABASE_URL forms parse, with percent-decoding and options")
    func urlParsing() throws {
        let full = try PostgresConfiguration(url: "postgresql://us%40er:p%2Fss@db.internal:6543/bill%20ing?sslmode=require")
        #expect(full.user == "us@er")
        #expect(full.password == "p/ss")
        #expect(full.host == "db.internal")
        #expect(full.port == 6543)
        #expect(full.database == "bill ing")
        #expect(full.options == ["sslmode": "require"])
        #expect(!full.description.contains("p/ss"))
        let short = try PostgresConfiguration(url: "postgres://tally@localhost/tally")
        #expect(short.port == 5432)
        #expect(short.password == nil)
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "mysql://a@b/c") }
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "postgresql://a@b/") }
    }

    @Test("a pool serves more concurrent callers than it has connections")
    func poolWaiters() async throws {
        let pool = try pool(size: 2)
        let pids = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<20 {
                group.addTask { try await pool.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self) }
            }
            return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
        }
        #expect((1...2).contains(pids.count))
    }
}
