import PostgresClient
import RabbitMQClient
import TallyMessaging

extension WorkFailure {
    /// The usual reading of an error thrown while doing a message's work: PostgreSQL
    /// unreachable is `dependencyDown("database")`, a deadlock or serialization failure a
    /// `conflict`, a lost broker connection `brokerGone`, anything else a `failed` attempt
    /// with the error's full text (the park reason people read).
    public static func classifying(_ error: any Error) -> WorkFailure {
        switch error {
        case let error as PostgresError where error.isConnectionError || error.code == .connectionFailed:
            return .dependencyDown("database")
        case let error as PostgresError where error.isRetryableConflict:
            return .conflict
        case let error as AMQPError where error.needsReconnect:
            return .brokerGone
        default:
            return .failed(String(reflecting: error))
        }
    }
}
