import ArgumentParser
import Foundation
import PostgresClient
import RabbitMQClient

/// The `main` of every Tally executable: ArgumentParser's, except that a command that could
/// not reach PostgreSQL or RabbitMQ says which setting names the server and what to do,
/// instead of printing the client's error value (`Error: PostgresError(connectionFailed: …)`).
public enum CommandLineMain {
    public static func run(_ root: any AsyncParsableCommand.Type) async {
        do {
            var command = try root.parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            root.exit(withError: explained(error))
        }
    }

    /// `error` with what to do next when it is a server that could not be reached; any
    /// other error as it is (ArgumentParser prints usage errors, help and exit codes).
    static func explained(_ error: any Error) -> any Error {
        if let error = error as? PostgresError, error.code == .connectionFailed {
            return CommandFailure(
                "cannot connect to PostgreSQL: \(reason(error.message)) Check that it is running and that "
                    + "DATABASE_URL names it (./ops/local.sh up starts the local one; `config` shows the setting)")
        }
        if let error = error as? AMQPError, error.code == .connectionFailed {
            return CommandFailure(
                "cannot connect to RabbitMQ: \(reason(error.message)) Check that it is running and that "
                    + "AMQP_URL names it (./ops/local.sh up starts the local one; `config` shows the setting)")
        }
        return error
    }

    /// The client's reason on one line, ending as a sentence does.
    private static func reason(_ message: String) -> String {
        let text = message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .joined(separator: "; ")
        return text.last.map { ".?!".contains($0) } == true ? text : text + "."
    }
}
