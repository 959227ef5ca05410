/// The real broker's view of its client connections, through `rabbitmqctl` (which never
/// stops or restarts the broker).
public enum BrokerConnections {
    static func rabbitmqctl(_ arguments: String...) async throws -> String {
        try await TestEnvironment.output(of: TestEnvironment.rabbitmqctl, ["-q"] + arguments)
    }

    /// The broker's pid of the connection named `name` (its `connection_name`), if there is one.
    public static func pid(named name: String) async throws -> String? {
        // RabbitMQ 3.10 shows the connection_name only inside client_properties.
        let listing = try await rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
        return listing.split(separator: "\n").first { $0.contains("\"\(name)\"") }.map { String($0.split(separator: "\t")[0]) }
    }

    /// The broker's state of the connection with `pid` (`running`, `closed`, …), nil once it is gone.
    public static func state(pid: String) async throws -> String? {
        let listing = try await rabbitmqctl("list_connections", "--no-table-headers", "pid", "state")
        return listing.split(separator: "\n").first { $0.hasPrefix(pid + "\t") }.map { String($0.split(separator: "\t")[1]) }
    }

    /// Has the broker close the connection named `name` (`rabbitmqctl close_connection`), and
    /// returns once the broker has sent its `connection.close` (state `closed`, or gone).
    public static func close(named name: String) async throws {
        guard let pid = try await pid(named: name) else {
            throw OpsError(command: "/rabbitmqctl list_connections: no connection named \(name)", status: 1)
        }
        _ = try await rabbitmqctl("close_connection", pid, "closed by test")
        for _ in 0..<100 {
            guard let state = try await state(pid: pid), state != "closed" else { return }
        }
        throw OpsError(command: "/rabbitmqctl: connection \(name) still open after 100 checks", status: 1)
    }
}

/// The real broker's count of a queue's messages, through `rabbitmqctl`.
public enum BrokerQueues {
    /// Messages in `queue`, ready and delivered but not yet acknowledged (a passive
    /// `queue.declare` counts only the ready ones); nil if there is no such queue.
    public static func messages(in queue: String) async throws -> Int? {
        let listing = try await BrokerConnections.rabbitmqctl("list_queues", "--no-table-headers", "name", "messages")
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: "\t")
            if fields.count == 2, fields[0] == queue { return Int(fields[1]) }
        }
        return nil
    }
}
