import BillingEngine
import Foundation
import PostgresClient

/// A usage alert as the API shows it (SPEC §2 "Alerts").
public struct UsageAlert: Sendable, Equatable, Codable {
    public let id: UUID
    public let tenantID: UUID
    public let metric: String
    /// `threshold`, `quota` or `anomaly`.
    public let kind: String
    public let thresholdValue: String?
    public let thresholdPercentage: String?
    public let channels: [String]
    public let createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, metric, kind, channels
        case tenantID = "tenant_id"
        case thresholdValue = "threshold_value"
        case thresholdPercentage = "threshold_percentage"
        case createdAt = "created_at"
    }
}

/// What a new alert needs, checked field by field before it reaches the database.
public struct NewUsageAlert: Sendable, Equatable {
    public let tenantID: UUID
    public let metric: String
    public let kind: String
    public let thresholdValue: Quantity?
    public let thresholdPercentage: Quantity?
    public let channels: [String]

    /// Throws the first problem, naming its field.
    public init(
        tenantID: UUID, metric: String, kind: String, thresholdValue: String?, thresholdPercentage: String?, channels: [String]?
    ) throws(AlertValidationError) {
        guard metric.range(of: "^[a-z][a-z0-9_]{0,99}$", options: .regularExpression) != nil else {
            throw AlertValidationError(field: "metric", message: "must be a metric name matching [a-z][a-z0-9_]{0,99}")
        }
        guard ["threshold", "quota", "anomaly"].contains(kind) else {
            throw AlertValidationError(field: "kind", message: "must be threshold, quota or anomaly")
        }
        let channels = channels ?? ["email"]
        guard !channels.isEmpty, channels.allSatisfy({ ["email", "webhook"].contains($0) }), Set(channels).count == channels.count else {
            throw AlertValidationError(field: "channels", message: "must list email and/or webhook, each once")
        }
        self.tenantID = tenantID
        self.metric = metric
        self.kind = kind
        self.channels = channels
        self.thresholdValue = try Self.positive(thresholdValue, field: "threshold_value", required: kind == "threshold")
        self.thresholdPercentage = try Self.positive(thresholdPercentage, field: "threshold_percentage", required: kind == "quota")
        if let percentage = self.thresholdPercentage, percentage > Quantity(units: 10_000) {
            throw AlertValidationError(field: "threshold_percentage", message: "must be at most 10000 (percent of the quota)")
        }
        // Stored to the hundredth of a percent (numeric(7,2)): 0.001 was stored as 0 and 50.125
        // as 50.13 (the first a 500, the second a different threshold than asked).
        if let percentage = self.thresholdPercentage, percentage.scaled % (Quantity.scale / 100) != 0 {
            throw AlertValidationError(field: "threshold_percentage", message: "has more than 2 fractional digits; a percentage is kept to 0.01")
        }
    }

    private static func positive(_ text: String?, field: String, required: Bool) throws(AlertValidationError) -> Quantity? {
        guard let text else {
            if required { throw AlertValidationError(field: field, message: "is required for this kind of alert") }
            return nil
        }
        guard required else { throw AlertValidationError(field: field, message: "does not apply to this kind of alert") }
        let value: Quantity
        do {
            value = try Quantity(parsingTotal: text)
        } catch .totalTooLarge {
            throw AlertValidationError(field: field, message: "must be below 1e34, the largest total Tally keeps")
        } catch .tooManyFractionDigits(let count) {
            throw AlertValidationError(field: field, message: "has \(count) fractional digits; at most 4 are kept exactly")
        } catch {
            throw AlertValidationError(field: field, message: "must be a positive decimal with at most 4 fractional digits")
        }
        guard value > .zero else { throw AlertValidationError(field: field, message: "must be greater than 0") }
        return value
    }
}

/// A refused alert field.
public struct AlertValidationError: Error, Sendable, Equatable {
    public let field: String
    public let message: String
}

/// Usage alerts in PostgreSQL; every call is scoped to one tenant.
public struct AlertStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// The most alerts a tenant may have: each is evaluated with every batch of its usage.
    public static let maxPerTenant = 100

    /// Nil when the tenant has `maxPerTenant` alerts already (counted and inserted under the
    /// tenant's row lock, so requests at once cannot each see room for one more).
    public func create(_ alert: NewUsageAlert) async throws -> UsageAlert? {
        try await pool.withTransaction { connection -> UsageAlert? in
            guard try !connection.query("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE", [alert.tenantID]).isEmpty else {
                throw UnknownTenant([alert.tenantID])
            }
            let count = try connection.query("SELECT count(*) FROM usage_alerts WHERE tenant_id = $1", [alert.tenantID])[0]
                .decode(0, as: Int.self)
            guard count < Self.maxPerTenant else { return nil }
            let rows = try connection.query(
                """
                INSERT INTO usage_alerts (tenant_id, metric, kind, threshold_value, threshold_percentage, channels)
                VALUES ($1, $2, $3, $4::numeric, $5::numeric, string_to_array($6, ','))
                RETURNING \(Self.columns)
                """,
                [
                    alert.tenantID, alert.metric, alert.kind, alert.thresholdValue?.description,
                    alert.thresholdPercentage?.description, alert.channels.joined(separator: ","),
                ])
            return try Self.alert(from: rows[0])
        }
    }

    public func list(tenant: UUID) async throws -> [UsageAlert] {
        try await pool.query("SELECT \(Self.columns) FROM usage_alerts WHERE tenant_id = $1 ORDER BY created_at, id", [tenant])
            .map(Self.alert(from:))
    }

    public func alert(id: UUID) async throws -> UsageAlert? {
        try await pool.query("SELECT \(Self.columns) FROM usage_alerts WHERE id = $1", [id]).first.map(Self.alert(from:))
    }

    /// Deletes the alert (and its firing record); false when it is not the tenant's.
    public func delete(id: UUID, tenant: UUID) async throws -> Bool {
        try await pool.query("DELETE FROM usage_alerts WHERE id = $1 AND tenant_id = $2", [id, tenant]).affectedRows == 1
    }

    static let columns = """
        id, tenant_id, metric, kind, trim_scale(threshold_value)::text, trim_scale(threshold_percentage)::text,
        array_to_string(channels, ','), created_at
        """

    static func alert(from row: PostgresRow) throws -> UsageAlert {
        UsageAlert(
            id: try row.decode(0), tenantID: try row.decode(1), metric: try row.decode(2), kind: try row.decode(3),
            thresholdValue: row.text(4), thresholdPercentage: row.text(5),
            channels: (row.text(6) ?? "").split(separator: ",").map(String.init), createdAt: try row.decode(7))
    }
}
