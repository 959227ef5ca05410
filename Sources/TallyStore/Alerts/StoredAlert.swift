import BillingEngine
import Foundation
import PostgresClient

/// A tenant's alert as stored in `usage_alerts`.
public struct StoredAlert: Sendable {
    public let id: UUID
    public let kind: String
    public let rule: AlertRule
    public let thresholdText: String?
    public let channels: [String]

    /// The threshold as people read it: `10`, not the column's `10.0000` (the firing key
    /// keeps the stored text, so alerts fired before this never fire twice).
    public var threshold: String? { thresholdText.map { text in (try? Quantity(parsingTotal: text))?.description ?? text } }

    /// What "each threshold it crosses" means for the firing record: the value or
    /// percentage itself, so editing a threshold re-arms the alert.
    public var thresholdKey: String { "\(kind):\(thresholdText ?? "-")" }

    /// The alerts of `tenants`, oldest first, by tenant.
    public static func load(tenants: [UUID], on connection: isolated PostgresConnection) throws -> [UUID: [StoredAlert]] {
        let rows = try connection.query(
            """
            SELECT id, tenant_id, metric, kind, threshold_value::text, threshold_percentage::text, array_to_string(channels, ',')
              FROM usage_alerts WHERE tenant_id = ANY($1::uuid[]) ORDER BY created_at, id
            """, [PostgresTextArray(tenants.map(\.lowercasedText))])
        var alerts: [UUID: [StoredAlert]] = [:]
        for row in rows {
            let id = try row.decode(0, as: UUID.self)
            let kind = try row.decode(3, as: String.self)
            let condition: AlertRule.Condition
            let threshold: String?
            switch kind {
            case "threshold":
                threshold = row.text(4)
                condition = .threshold(try Quantity(parsingTotal: threshold ?? "0"))
            case "quota":
                threshold = row.text(5)
                // Exact: 33.99 was cut to 33 (and 0.5 to 0, firing at no usage).
                condition = .quotaPercentage(try Quantity(parsingTotal: threshold ?? "100"))
            default:
                threshold = nil
                condition = .anomaly(AnomalyRule())
            }
            let rule = AlertRule(id: id.uuidString, metric: try row.decode(2), condition: condition)
            alerts[try row.decode(1, as: UUID.self), default: []].append(
                StoredAlert(
                    id: id, kind: kind, rule: rule, thresholdText: threshold,
                    channels: (row.text(6) ?? "").split(separator: ",").map(String.init)))
        }
        return alerts
    }
}
