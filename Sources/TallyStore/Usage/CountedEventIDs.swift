import Foundation
import PostgresClient

/// Which usage events are counted already: the Aggregator's dedup table
/// (`usage_event_ids`), read for backfills that report what they would add
/// (`producer backfill`). Ids are kept for the dedup window (events older than 90 days are
/// refused anyway).
public enum CountedEventIDs {
    public struct Key: Hashable, Sendable {
        public let tenant: UUID
        public let id: String

        public init(tenant: UUID, id: String) {
            self.tenant = tenant
            self.id = id
        }
    }

    /// The keys of `keys` that are counted, looked up by the table's key (event id, tenant).
    public static func counted(_ keys: [Key], on connection: isolated PostgresConnection) throws -> Set<Key> {
        guard !keys.isEmpty else { return [] }
        let rows = try connection.query(
            """
            SELECT k.tenant_id, k.event_id
              FROM unnest($1::text[], $2::uuid[]) AS k (event_id, tenant_id)
             WHERE EXISTS (SELECT 1 FROM usage_event_ids i WHERE i.event_id = k.event_id AND i.tenant_id = k.tenant_id)
            """, [PostgresTextArray(keys.map(\.id)), PostgresTextArray(keys.map { $0.tenant.uuidString.lowercased() })])
        return Set(try rows.map { Key(tenant: try $0.decode(0, as: UUID.self), id: try $0.decode(1, as: String.self)) })
    }
}
