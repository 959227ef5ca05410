import PostgresClient

/// The per-year counters of gapless invoice numbers (`invoice_number_counters`). A counter
/// moves in the caller's transaction and its row stays locked until the commit, so a
/// rollback gives its numbers back: take numbers last, after every read.
public enum InvoiceNumbers {
    /// Takes the next number of `year`; returns it.
    public static func next(year: Int, on connection: isolated PostgresConnection) throws -> Int {
        try connection.query(
            """
            INSERT INTO invoice_number_counters (year, last_number) VALUES ($1, 1)
            ON CONFLICT (year) DO UPDATE SET last_number = invoice_number_counters.last_number + 1
            RETURNING last_number
            """, [year])[0].decode(0, as: Int.self)
    }

    /// Takes the next `count` numbers of `year` in one step; returns the last of them.
    public static func take(_ count: Int, year: Int, on connection: isolated PostgresConnection) throws -> Int {
        try connection.query(
            """
            INSERT INTO invoice_number_counters (year, last_number) VALUES ($1, $2)
            ON CONFLICT (year) DO UPDATE SET last_number = invoice_number_counters.last_number + $2
            RETURNING last_number
            """, [year, count])[0].decode(0, as: Int.self)
    }
}
