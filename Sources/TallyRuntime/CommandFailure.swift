/// A command that cannot do what it was asked for a reason found while running (no such
/// parked event, no such plan, a file that cannot be read): ArgumentParser prints
/// `Error: ` and the message and exits 1. `ValidationError` is for arguments that are
/// wrong as written; it exits 64 and prints the usage, which says nothing about a
/// missing id.
public struct CommandFailure: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
