import ConnectionURLs
import Foundation

/// Where and how to connect, parsed from a `DATABASE_URL` such as
/// `postgresql://user:pass@127.0.0.1:5432/tally?sslmode=require`.
///
/// Query parameters are passed to libpq as connection keywords (sslmode,
/// application_name, connect_timeout, …). The password never appears in `description`.
public struct PostgresConfiguration: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// Extra libpq keywords, e.g. `["sslmode": "require"]`.
    public var options: [String: String]
    /// Server settings for every session of this configuration, reconnections included
    /// (`-c name=value` in the startup packet), e.g. `["synchronous_commit": "off"]`.
    public var sessionSettings: [String: String] = [:]

    public init(
        host: String = "127.0.0.1", port: Int = 5432, user: String, password: String? = nil, database: String,
        options: [String: String] = [:]
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.options = options
    }

    /// Parses a `postgresql://` or `postgres://` URL; user, password and database are percent-decoded.
    public init(url: String) throws(PostgresError) {
        guard let parsed = ConnectionURL(url, schemes: ["postgres", "postgresql"]) else {
            throw PostgresError(.configuration, message: "DATABASE_URL must look like postgresql://user:pass@host:port/db")
        }
        guard let user = parsed.user, !user.isEmpty else {
            throw PostgresError(.configuration, message: "DATABASE_URL names no user")
        }
        guard let database = parsed.pathName, !database.isEmpty else {
            throw PostgresError(.configuration, message: "DATABASE_URL names no database")
        }
        var options: [String: String] = [:]
        for item in parsed.query {
            options[item.name] = item.value ?? ""
        }
        self.init(
            host: parsed.host ?? "127.0.0.1", port: parsed.port ?? 5432, user: user, password: parsed.password, database: database,
            options: options)
    }

    /// The keyword/value pairs handed to `PQconnectdbParams`.
    var keywords: [(String, String)] {
        var pairs = [("host", host), ("port", String(port)), ("user", user), ("dbname", database)]
        if let password { pairs.append(("password", password)) }
        if options["connect_timeout"] == nil { pairs.append(("connect_timeout", "10")) }
        if options["application_name"] == nil { pairs.append(("application_name", "tally")) }
        // Every session speaks UTC, so timestamptz text is parsed the same everywhere. And
        // without PostgreSQL's JIT unless the URL asks for it: Tally's statements are short
        // and run thousands of times, and LLVM compiled some (a statement over the
        // partitions of usage_events, above the JIT's plan cost) for seconds each time —
        // most of a billing run's late-usage check.
        var defaults = ["TimeZone": "UTC"]
        if !(options["options"] ?? "").contains("jit") { defaults["jit"] = "off" }
        let settings = defaults.merging(sessionSettings) { _, given in given }
        let startup = settings.sorted { $0.key < $1.key }.map { "-c \($0.key)=\($0.value)" }.joined(separator: " ")
        pairs.append(contentsOf: options.filter { $0.key != "options" }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        pairs.append(("options", [options["options"], startup].compactMap { $0 }.joined(separator: " ")))
        return pairs
    }

    public var description: String { "postgresql://\(user)@\(host):\(port)/\(database)" }
}
