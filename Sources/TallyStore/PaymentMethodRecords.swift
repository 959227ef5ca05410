import Foundation
import PostgresClient

/// The one write of a provider's card into `payment_methods` (provider id, brand, last4,
/// expiry — never a number), used by the Stripe push and by Stripe's webhook events.
public enum PaymentMethodRecords {
    public static func upsertStripeCard(
        tenant: UUID, providerID: String, brand: String?, last4: String?, expMonth: Int?, expYear: Int?,
        on connection: isolated PostgresConnection
    ) throws {
        try connection.query(
            """
            INSERT INTO payment_methods (tenant_id, provider, provider_id, brand, last4, exp_month, exp_year)
            VALUES ($1, 'stripe', $2, $3, $4, $5::int, $6::int)
            ON CONFLICT (provider_id) DO UPDATE SET brand = excluded.brand, last4 = excluded.last4,
                exp_month = excluded.exp_month, exp_year = excluded.exp_year, updated_at = now()
            """, [tenant, providerID, brand, last4, expMonth, expYear])
    }
}
