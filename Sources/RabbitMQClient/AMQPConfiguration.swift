import ConnectionURLs
import Foundation

/// Where and how to connect, parsed from an `AMQP_URL` such as
/// `amqp://user:pass@127.0.0.1:5672/%2F?heartbeat=30` or `amqps://…` (TLS).
///
/// The URL may list the nodes of a cluster, separated by commas: full URLs
/// (`amqp://u:p@mq-1:5672/%2F,amqp://u:p@mq-2:5672/%2F`) that differ only in host and port,
/// or `host:port` after the first (`amqp://u:p@mq-1:5672/%2F,mq-2:5672,mq-3`); options go on the
/// first URL, and a comma in a password is written `%2C`. A connection
/// goes to the first node that answers, starting from a different one each time, so the
/// clients of a process spread over the cluster and a lost node is passed over.
///
/// The vhost is the percent-decoded path (`/%2F` and an empty path are `/`).
/// The password never appears in `description`.
public struct AMQPConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// One broker node's address.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public var host: String
    public var port: Int
    /// The other nodes of the cluster, tried when `host:port` does not answer.
    public var alternateEndpoints: [Endpoint] = []
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

    /// Every node to connect to, `host:port` first.
    public var endpoints: [Endpoint] { [Endpoint(host: host, port: port)] + alternateEndpoints }

    /// Parses an `amqp://` or `amqps://` URL with optional `heartbeat`,
    /// `connection_timeout` (seconds), `channel_max`, `frame_max` and `cacertfile` query
    /// items; or several, separated by commas (the nodes of a cluster; see the type).
    public init(url: String, connectionName: String = "tally") throws(AMQPError) {
        let parts = url.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        try self.init(single: parts[0], connectionName: connectionName)
        for part in parts.dropFirst() {
            guard !part.isEmpty else { throw AMQPError(.configuration, message: "AMQP_URL lists an empty broker between commas") }
            alternateEndpoints.append(try alternate(part))
        }
    }

    /// A further node: `host[:port]`, or a URL that agrees with the first in all but host and port.
    private func alternate(_ text: String) throws(AMQPError) -> Endpoint {
        if text.contains("://") {
            var other = try AMQPConfiguration(single: text, connectionName: connectionName)
            let endpoint = Endpoint(host: other.host, port: other.port)
            (other.host, other.port) = (host, port)
            var first = self
            first.alternateEndpoints = []
            guard other == first else {
                throw AMQPError(
                    .configuration,
                    message: "the brokers of AMQP_URL must share scheme, credentials, vhost and options; only host and port may differ")
            }
            return endpoint
        }
        guard let parsed = ConnectionURL("\(useTLS ? "amqps" : "amqp")://\(text)", schemes: ["amqp", "amqps"]), let host = parsed.host,
            parsed.encodedPath.isEmpty, !parsed.hasQuery, parsed.user == nil
        else {
            throw AMQPError(.configuration, message: "AMQP_URL lists '\(text)': after the first URL, give host:port or a whole URL")
        }
        return Endpoint(host: host, port: parsed.port ?? (useTLS ? 5671 : 5672))
    }

    private init(single url: String, connectionName: String) throws(AMQPError) {
        guard let parsed = ConnectionURL(url, schemes: ["amqp", "amqps"]) else {
            throw AMQPError(.configuration, message: "AMQP_URL must look like amqp://user:pass@host:port/vhost")
        }
        let path = parsed.encodedPath
        let vhost = path.isEmpty || path == "/" ? "/" : String(path.dropFirst()).removingPercentEncoding ?? ""
        guard !vhost.isEmpty else { throw AMQPError(.configuration, message: "AMQP_URL has an unreadable vhost") }
        self.init(
            host: parsed.host ?? "127.0.0.1",
            port: parsed.port,
            user: parsed.user ?? "guest",
            password: parsed.password ?? "guest",
            vhost: vhost,
            useTLS: parsed.scheme == "amqps",
            connectionName: connectionName)
        for item in parsed.query {
            try apply(item)
        }
    }

    private mutating func apply(_ item: ConnectionURL.Item) throws(AMQPError) {
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
        "\(useTLS ? "amqps" : "amqp")://\(user)@\(endpoints.map(\.description).joined(separator: ","))/\(vhost == "/" ? "%2F" : vhost)"
    }
}
