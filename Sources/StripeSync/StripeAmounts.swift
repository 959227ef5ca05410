import BillingEngine

/// Amounts as Stripe's API takes them. Stripe counts most currencies in hundredths, as
/// ISO 4217 does, but not all: ISK is two-decimal in Stripe (ISO: none), MGA zero-decimal
/// (ISO: two); and Stripe takes the three-decimal currencies only in multiples of ten
/// (https://stripe.com/docs/currencies). Sending Tally's minor units unchanged billed an
/// ISK invoice at a hundredth of its amount and an MGA invoice at a hundred times it.
enum StripeAmounts {
    /// Stripe's zero-decimal currencies.
    static let zeroDecimal: Set<String> = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    ]
    /// Stripe's three-decimal currencies, whose amounts must end in 0.
    static let threeDecimal: Set<String> = ["bhd", "jod", "kwd", "omr", "tnd"]

    /// The digits of Stripe's unit for `currency`: 0, 3, or else 2.
    static func digits(of currency: String) -> Int {
        zeroDecimal.contains(currency) ? 0 : threeDecimal.contains(currency) ? 3 : 2
    }

    /// `amount` in Tally's minor units of `currency` (ISO 4217) as Stripe's; throws a
    /// permanent refusal naming the amount when Stripe cannot take it exactly (an MGA
    /// amount with iraimbilanja, a KWD amount not in tens of fils), rather than round it:
    /// Stripe would then bill another amount than the invoice finance holds.
    static func stripeAmount(_ amount: Int64, currency: String, what: String) throws -> Int64 {
        let ours = Currency(code: currency)?.minorUnitDigits ?? 2
        let theirs = digits(of: currency)
        var converted = amount
        if theirs > ours {
            for _ in ours..<theirs {
                let (product, overflow) = converted.multipliedReportingOverflow(by: 10)
                guard !overflow else { throw refusal(amount, currency: currency, what: what, why: "is too large for Stripe") }
                converted = product
            }
        } else if theirs < ours {
            let divisor = (theirs..<ours).reduce(Int64(1)) { value, _ in value * 10 }
            guard amount % divisor == 0 else {
                throw refusal(amount, currency: currency, what: what, why: "has a fraction Stripe does not charge in \(currency.uppercased())")
            }
            converted = amount / divisor
        }
        if threeDecimal.contains(currency), converted % 10 != 0 {
            throw refusal(amount, currency: currency, what: what, why: "is not a multiple of 10, which Stripe requires in \(currency.uppercased())")
        }
        return converted
    }

    private static func refusal(_ amount: Int64, currency: String, what: String, why: String) -> StripeAPIError {
        let shown = Currency(code: currency).map { "\($0.symbol)\($0.format(Cents(amount)))" } ?? "\(amount)"
        return StripeAPIError(
            status: 0, type: "tally_currency_unit", code: nil,
            message:
                "\(what) of \(shown) \(why): not pushed; collect this invoice outside Stripe, or bill this tenant in a currency Stripe takes whole",
            method: "POST", path: "/v1/invoiceitems", isUnknownRoute: false)
    }
}
