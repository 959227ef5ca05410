/// Why usage could not be accepted. Every case is the caller's to see: Tally never
/// drops an event it accepted.
public enum MeteringError: Error, Equatable, CustomStringConvertible {
    /// The broker is unavailable and the disk spool is full: retry later (HTTP 503).
    case backPressure
    /// The disk spool cannot be written (permissions, disk failure).
    case spoolFailed(String)
    /// The meter is shutting down and takes no more events.
    case shuttingDown
    /// The event breaks a rule of SPEC §3; `field` names it.
    case invalidEvent(field: String, message: String)

    public var description: String {
        switch self {
        case .backPressure: "usage refused: RabbitMQ is unavailable and the spool is full; retry with backoff"
        case .spoolFailed(let reason): "usage refused: the disk spool cannot be written (\(reason))"
        case .shuttingDown: "usage refused: the meter is shutting down"
        case .invalidEvent(let field, let message): "usage refused: \(field) \(message)"
        }
    }
}
