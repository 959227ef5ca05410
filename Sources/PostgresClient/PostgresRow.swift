/// The rows of one result, copied out of libpq's result so they outlive it.
public struct PostgresRows: Sendable, RandomAccessCollection {
    public let columns: [String]
    let values: [[String?]]
    /// Rows the statement touched (INSERT/UPDATE/DELETE/COPY), from PQcmdTuples.
    public let affectedRows: Int

    public var startIndex: Int { 0 }
    public var endIndex: Int { values.count }
    public subscript(position: Int) -> PostgresRow {
        PostgresRow(columns: columns, values: values[position])
    }
}

/// One row; columns are read by index or name, decoded from PostgreSQL's text format.
public struct PostgresRow: Sendable {
    public let columns: [String]
    let values: [String?]

    /// Column `index` as `T`; a NULL or a malformed value throws, naming the column.
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard let value = try decode(index, as: T?.self) else {
            throw PostgresError(.decoding, message: "column \(columns[index]) is NULL, expected \(T.self)")
        }
        return value
    }

    /// Column `index` as `T`, nil for NULL.
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T?.Type) throws(PostgresError) -> T? {
        guard values.indices.contains(index) else {
            throw PostgresError(.decoding, message: "no column at index \(index) (the row has \(values.count))")
        }
        guard let text = values[index] else { return nil }
        do {
            return try T(postgresText: text)
        } catch {
            throw PostgresError(.decoding, message: "column \(columns[index]): \(error.message)")
        }
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
        values.indices.contains(index) ? values[index] : nil
    }

    private func index(of name: String) throws(PostgresError) -> Int {
        guard let index = columns.firstIndex(of: name) else {
            throw PostgresError(.decoding, message: "no column named \(name)")
        }
        return index
    }
}
