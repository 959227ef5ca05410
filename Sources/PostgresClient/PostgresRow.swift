/// The rows of one result, copied out of libpq's result so they outlive it: every value's
/// bytes in one buffer (a String per value was most of what reading 350,000 rows cost),
/// made into Swift values only when read.
public struct PostgresRows: Sendable, RandomAccessCollection {
    public let columns: [String]
    let storage: Storage
    /// Rows the statement touched (INSERT/UPDATE/DELETE/COPY), from PQcmdTuples.
    public let affectedRows: Int

    /// The values of a result, row after row: value `i` is the `lengths[i]` bytes at
    /// `starts[i]` of `bytes` (owned, freed with the storage), NULL where its length is -1.
    @usableFromInline
    final class Storage: @unchecked Sendable {  // immutable after init
        let rowCount: Int
        @usableFromInline let columnCount: Int
        @usableFromInline let bytes: UnsafeMutableBufferPointer<UInt8>
        @usableFromInline let starts: [Int]
        @usableFromInline let lengths: [Int32]

        init(rowCount: Int, columnCount: Int, bytes: UnsafeMutableBufferPointer<UInt8>, starts: [Int], lengths: [Int32]) {
            self.rowCount = rowCount
            self.columnCount = columnCount
            self.bytes = bytes
            self.starts = starts
            self.lengths = lengths
        }

        deinit { bytes.deallocate() }

        /// No rows.
        static var empty: Storage {
            Storage(rowCount: 0, columnCount: 0, bytes: .allocate(capacity: 0), starts: [], lengths: [])
        }

        /// The bytes of value (`row`, `column`), nil for NULL; valid while the storage lives.
        @inlinable
        func value(row: Int, column: Int) -> UnsafeBufferPointer<UInt8>? {
            let cell = row * columnCount + column
            let length = Int(lengths[cell])
            guard length >= 0 else { return nil }
            return UnsafeBufferPointer(start: bytes.baseAddress.map { $0 + starts[cell] }, count: length)
        }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.rowCount }
    public subscript(position: Int) -> PostgresRow {
        PostgresRow(columns: columns, storage: storage, row: position)
    }
}

/// One row; columns are read by index or name, decoded from PostgreSQL's text format.
public struct PostgresRow: Sendable {
    public let columns: [String]
    @usableFromInline let storage: PostgresRows.Storage
    @usableFromInline let row: Int

    /// Column `index` as `T`; a NULL or a malformed value throws, naming the column.
    /// Inlinable, as the next: specialised where it is called, not instantiated per value.
    @inlinable
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard let value = try decode(index, as: T?.self) else {
            throw decodingError(index, "is NULL, expected \(T.self)")
        }
        return value
    }

    /// Column `index` as `T`, nil for NULL.
    @inlinable
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T?.Type) throws(PostgresError) -> T? {
        guard columns.indices.contains(index) else {
            throw decodingError(nil, "no column at index \(index) (the row has \(columns.count))")
        }
        return try withExtendedLifetime(storage) { () throws(PostgresError) -> T? in
            guard let bytes = storage.value(row: row, column: index) else { return nil }
            do throws(PostgresError) {
                return try T(postgresBytes: bytes)
            } catch {
                throw decodingError(index, ": " + error.message)
            }
        }
    }

    /// A decoding error naming column `index` (when there is one) before `detail`.
    @usableFromInline
    func decodingError(_ index: Int?, _ detail: String) -> PostgresError {
        guard let index else { return PostgresError(.decoding, message: detail) }
        return PostgresError(.decoding, message: "column \(columns[index])" + (detail.hasPrefix(":") ? detail : " " + detail))
    }

    /// Column `name` as `T`.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws(PostgresError) -> T {
        try decode(try index(of: name), as: type)
    }

    /// Column `name` as `T`, nil for NULL.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T?.Type) throws(PostgresError) -> T? {
        try decode(try index(of: name), as: type)
    }

    /// The raw text of column `index` (e.g. a numeric's exact digits), nil for NULL.
    public func text(_ index: Int) -> String? {
        guard columns.indices.contains(index) else { return nil }
        return withExtendedLifetime(storage) { storage.value(row: row, column: index).map { String(decoding: $0, as: UTF8.self) } }
    }

    private func index(of name: String) throws(PostgresError) -> Int {
        guard let index = columns.firstIndex(of: name) else {
            throw PostgresError(.decoding, message: "no column named \(name)")
        }
        return index
    }
}
