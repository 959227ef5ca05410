import Foundation

/// Who a request acts for: the operator holding the admin token, or one tenant
/// through one of its API keys (SPEC §6: a tenant key sees only its tenant).
public enum Principal: Sendable, Hashable {
    case admin
    case tenant(UUID)

    /// Whether this principal may read or change `tenantID`'s data.
    public func canAccess(tenant tenantID: UUID) -> Bool {
        switch self {
        case .admin: true
        case .tenant(let own): own == tenantID
        }
    }
}
