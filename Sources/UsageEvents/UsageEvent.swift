import Foundation

/// One unit of metered usage, as SPEC §3 defines it on the wire and after validation.
///
/// `id` is the idempotency key: set once where the usage happened and reused on
/// every retry, so the same id is counted once per tenant. `time` is when the usage
/// happened and decides its billing period, not when it arrived.
public struct UsageEvent: Sendable, Hashable {
    public let id: String
    public let tenantID: UUID
    /// The billable metric (`type` on the wire), e.g. `api_calls`.
    public let metric: String
    public let name: String?
    /// Exact, 0 ≤ quantity ≤ 1e12, at most 4 fractional digits.
    public let quantity: Quantity
    public let unit: String?
    public let time: Date
    public let metadata: [String: JSONValue]

    /// An event whose fields already passed `UsageEventValidator`.
    public init(
        id: String, tenantID: UUID, metric: String, name: String? = nil, quantity: Quantity, unit: String? = nil,
        time: Date, metadata: [String: JSONValue] = [:]
    ) {
        self.id = id
        self.tenantID = tenantID
        self.metric = metric
        self.name = name
        self.quantity = quantity
        self.unit = unit
        self.time = time
        self.metadata = metadata
    }
}

extension UsageEvent: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, name, quantity, unit, time, metadata
        case tenantID = "tenant_id"
        case metric = "type"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        tenantID = try container.decode(UUID.self, forKey: .tenantID)
        metric = try container.decode(String.self, forKey: .metric)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        // The wire writes the quantity as a decimal string; Foundation's decoder gives a
        // JSON number only as a `Decimal`, whose text is exact (the ingest path reads it
        // from its own text: `UsageEventValidator`).
        let text = try (try? container.decode(String.self, forKey: .quantity)) ?? container.decode(Decimal.self, forKey: .quantity).description
        do {
            quantity = try Quantity(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .quantity, in: container, debugDescription: "\(error)")
        }
        unit = try container.decodeIfPresent(String.self, forKey: .unit)
        let timeText = try container.decode(String.self, forKey: .time)
        guard let parsed = RFC3339.parse(timeText) else {
            throw DecodingError.dataCorruptedError(forKey: .time, in: container, debugDescription: "not RFC 3339")
        }
        time = parsed
        metadata = try container.decodeIfPresent([String: JSONValue].self, forKey: .metadata) ?? [:]
    }

    /// The wire form: quantity as a decimal string (exact in every JSON parser),
    /// time as RFC 3339 UTC with microseconds.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(tenantID.uuidString.lowercased(), forKey: .tenantID)
        try container.encode(metric, forKey: .metric)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(quantity.description, forKey: .quantity)
        try container.encodeIfPresent(unit, forKey: .unit)
        try container.encode(RFC3339.format(time), forKey: .time)
        if !metadata.isEmpty { try container.encode(metadata, forKey: .metadata) }
    }
}
