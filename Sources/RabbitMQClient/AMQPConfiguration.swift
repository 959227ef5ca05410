import Foundation

/// Where and how to connect, parsed from an `AMQP_URL` such as
/// `amqp://user:pass@127.0.0.1:5672/%2F?heartbeat=30` or `amqps://…` (TLS).
///
/// The vhost is the percent-decoded path (`/%2F` and an empty path are `/`).
/// The password never appears in `description`.
public struct AMQPConfiguration: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String
    public var useTLS: Bool
    /// PEM bundle of trusted CAs for TLS; nil uses the system's.
    public var caCertificatePath: String?
    /// Seconds between heartbeats; 0 disables them.
    public var heartbeat: Int
    public var connectionTimeout: Duration
    public var channelMax: Int
    public var frameMax: Int
    /// Shown in the broker's connection list (`rabbitmqctl list_connections user_provided_name`).
    public var connectionName: String

    public init(
        host: String = "127.0.0.1", port: Int? = nil, user: String = "guest", password: String = "guest",
        vhost: String = "/", useTLS: Bool = false, heartbeat: Int = 30, connectionName: String = "tally"
    ) {
        self.host = host
        self.port = port ?? (useTLS ? 5671 : 5672)
        self.user = user
        self.password = password
        self.vhost = vhost
        self.useTLS = useTLS
        self.caCertificatePath = nil
        self.heartbeat = heartbeat
        self.connectionTimeout = .seconds(10)
        self.channelMax = 0
        self.frameMax = 131_072
        self.connectionName = connectionName
    }

    /// Parses an `amqp://` or `amqps://` URL with optional `heartbeat`,
    /// `connection_timeout` (seconds), `channel_max`, `frame_max` and `cacertfile` query items.
    public init(url: String, connectionName: String = "tally") throws(AMQPError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            ["amqp", "amqps"].contains(scheme)
        else {
            throw AMQPError(.configuration, message: "AMQP_URL must look like amqp://user:pass@host:port/vhost")
        }
        let path = components.percentEncodedPath
        let vhost = path.isEmpty || path == "/" ? "/" : String(path.dropFirst()).removingPercentEncoding ?? ""
        guard !vhost.isEmpty else { throw AMQPError(.configuration, message: "AMQP_URL has an unreadable vhost") }
        self.init(
            host: components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1",
            port: components.port,
            user: components.percentEncodedUser?.removingPercentEncoding ?? "guest",
            password: components.percentEncodedPassword?.removingPercentEncoding ?? "guest",
            vhost: vhost,
            useTLS: scheme == "amqps",
            connectionName: connectionName)
        for item in components.queryItems ?? [] {
            try apply(item)
        }
    }

    private mutating func apply(_ item: URLQueryItem) throws(AMQPError) {
        func number(_ range: ClosedRange<Int>) throws(AMQPError) -> Int {
            guard let value = item.value.flatMap(Int.init), range.contains(value) else {
                throw AMQPError(.configuration, message: "AMQP_URL option \(item.name) must be a number in \(range)")
            }
            return value
        }
        switch item.name {
        case "heartbeat": heartbeat = try number(0...3600)
        case "connection_timeout": connectionTimeout = .seconds(try number(1...3600))
        case "channel_max": channelMax = try number(0...65535)
        case "frame_max": frameMax = try number(4096...(1 << 30))
        case "cacertfile": caCertificatePath = item.value
        default: throw AMQPError(.configuration, message: "AMQP_URL option \(item.name) is not supported")
        }
    }

    public var description: String {
        "\(useTLS ? "amqps" : "amqp")://\(user)@\(host):\(port)/\(vhost == "/" ? "%2F" : vhost)"
    }
}
