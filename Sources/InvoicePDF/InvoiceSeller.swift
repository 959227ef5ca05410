import Foundation
import TallyRuntime

/// Who issues the invoices, as printed on every PDF. Every process that renders an
/// invoice (the billing API, and the Notifier that attaches it to emails) reads it
/// with these keys and this reader, so the same invoice always names the same seller.
///
/// `TALLY_SELLER_ADDRESS` holds the postal address with its lines separated by `;`
/// (`1 Market St; San Francisco, CA 94105; USA`): a semicolon, not a newline, so it
/// fits on one line of an env file, a systemd unit or a manifest. Spaces around each
/// line are dropped, and so are empty lines.
public struct InvoiceSeller: Sendable, Equatable {
    public var name: String
    public var email: String
    public var addressLines: [String]
    /// A VAT, GST or EIN number; nil prints none.
    public var taxID: String?

    /// The name printed when `TALLY_SELLER_NAME` is unset.
    public static let defaultName = "Tally"
    /// The email printed when `TALLY_SELLER_EMAIL` is unset.
    public static let defaultEmail = "billing@tally.localhost"

    public static let name = ConfigurationKey("TALLY_SELLER_NAME", summary: "who issues the invoices (on every PDF)", default: defaultName)
    public static let email = ConfigurationKey(
        "TALLY_SELLER_EMAIL", summary: "the issuer's billing email address (on every PDF)", default: defaultEmail)
    public static let address = ConfigurationKey(
        "TALLY_SELLER_ADDRESS", summary: "the issuer's postal address on every PDF, lines separated by ';'", isOptional: true)
    public static let taxID = ConfigurationKey(
        "TALLY_SELLER_TAX_ID", summary: "the issuer's tax id (VAT, GST, EIN) on every PDF; unset: none shown", isOptional: true)

    /// Every key the seller is read from, for a process's own `keys` list.
    public static let keys: [ConfigurationKey] = [name, email, address, taxID]

    /// A seller as given; by default the one the keys' defaults describe.
    public init(name: String = defaultName, email: String = defaultEmail, addressLines: [String] = [], taxID: String? = nil) {
        self.name = name
        self.email = email
        self.addressLines = addressLines
        self.taxID = taxID
    }

    /// The seller the environment describes (see the type for the address format).
    public init(reader: ConfigurationReader) throws(ConfigurationError) {
        self.init(
            name: try reader.string(Self.name), email: try reader.string(Self.email),
            addressLines: Self.addressLines(reader.optionalString(Self.address) ?? ""), taxID: reader.optionalString(Self.taxID))
    }

    /// `"1 Market St;  San Francisco ;"` → `["1 Market St", "San Francisco"]`.
    static func addressLines(_ text: String) -> [String] {
        text.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The seller as the document's party.
    public var party: InvoiceDocument.Party {
        InvoiceDocument.Party(name: name, email: email, addressLines: addressLines, taxID: taxID)
    }
}
