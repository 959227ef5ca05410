import BillingEngine
import Foundation
import PostgresClient

/// `alert_firings`: an alert fires at most once per billing period and threshold
/// (SPEC §2); its firing is recorded in the transaction that counted the usage.
public enum AlertFirings {
    /// An alert found firing, with the value that made it fire.
    public struct Firing: Sendable {
        public let alert: UUID
        public let periodStart: Instant
        public let thresholdKey: String
        public let value: Quantity

        public init(alert: UUID, periodStart: Instant, thresholdKey: String, value: Quantity) {
            self.alert = alert
            self.periodStart = periodStart
            self.thresholdKey = thresholdKey
            self.value = value
        }
    }

    /// Records `firings` in one statement; for each, whether it was new (not recorded
    /// before for its alert, period and threshold, nor earlier in `firings`).
    public static func record(_ firings: [Firing], on connection: isolated PostgresConnection) throws -> [Bool] {
        guard !firings.isEmpty else { return [] }
        let rows = try connection.query(
            """
            INSERT INTO alert_firings (alert_id, period_start, threshold_key, value)
            SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::numeric[])
            ON CONFLICT DO NOTHING
            RETURNING alert_id, period_start, threshold_key
            """,
            [
                PostgresTextArray(firings.map(\.alert.lowercasedText)),
                PostgresTextArray(firings.map { PostgresTimestamp(microsecondsSinceEpoch: $0.periodStart.microsecondsSinceEpoch).description }),
                PostgresTextArray(firings.map(\.thresholdKey)), PostgresTextArray(firings.map(\.value.description)),
            ])
        var recorded = Set<String>()
        for row in rows {
            let start = PostgresTimestamp(try row.decode(1, as: Date.self)).microsecondsSinceEpoch
            recorded.insert("\(try row.decode(0, as: UUID.self))|\(start)|\(try row.decode(2, as: String.self))")
        }
        return firings.map { firing in
            recorded.remove("\(firing.alert)|\(firing.periodStart.microsecondsSinceEpoch)|\(firing.thresholdKey)") != nil
        }
    }
}
