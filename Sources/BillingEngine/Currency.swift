/// An ISO 4217 currency as invoices need it: its code (lower case, as Stripe writes
/// it) and the digits of its minor unit (amounts are integers of that unit: cents for
/// USD, yen for JPY, fils for KWD). SPEC §2.1: "amounts in its minor unit".
public struct Currency: Sendable, Hashable, CustomStringConvertible {
    public let code: String
    public let minorUnitDigits: Int

    /// The currency of `code` (either case), or nil when it is not an active ISO 4217
    /// currency Tally knows.
    public init?(code: String) {
        let lower = code.lowercased()
        guard let digits = Self.known[lower] else { return nil }
        self.code = lower
        self.minorUnitDigits = digits
    }

    public var description: String { code.uppercased() }

    /// `amount` minor units as a decimal of the major unit, without a symbol:
    /// `123456` is `1,234.56` in USD, `123,456` in JPY and `123.456` in KWD.
    public func format(_ amount: Cents) -> String {
        let magnitude = amount.value.magnitude
        let divisor = (0..<minorUnitDigits).reduce(UInt64(1)) { value, _ in value * 10 }
        var text = InvoiceText.grouped(String(magnitude / divisor))
        if minorUnitDigits > 0 {
            let fraction = String(magnitude % divisor)
            text += "." + String(repeating: "0", count: minorUnitDigits - fraction.count) + fraction
        }
        return (amount.value < 0 ? "-" : "") + text
    }

    /// The symbol finance reads before an amount (`$`, `€`, `¥`), or the code and a space.
    public var symbol: String { Self.symbols[code] ?? description + " " }

    public static let usd = Currency(code: "usd")!

    /// Active ISO 4217 codes and their minor-unit digits (2 unless listed otherwise).
    private static let known: [String: Int] = {
        let twoDigits = """
            aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd btn bwp byn bzd cad cdf chf cny cop \
            crc cup cve czk dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd gtq gyd hkd hnl htg huf idr ils inr irr \
            jmd kes kgs khr kpw kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn \
            nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sdg sek sgd shp sle sos srd ssp stn svc syp \
            szl thb tjs tmt top try ttd twd tzs uah usd uyu uzs ves wst xcd yer zar zmw zwl
            """
        var digits: [String: Int] = [:]
        for code in twoDigits.split(separator: " ") { digits[String(code)] = 2 }
        for code in ["bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"] {
            digits[code] = 0
        }
        for code in ["bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"] { digits[code] = 3 }
        return digits
    }()

    private static let symbols: [String: String] = [
        "usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cny": "¥", "inr": "₹", "krw": "₩", "ils": "₪", "ngn": "₦", "php": "₱",
        "thb": "฿", "uah": "₴", "vnd": "₫", "try": "₺", "pln": "zł ", "chf": "CHF ", "cad": "CA$", "aud": "A$", "nzd": "NZ$",
        "hkd": "HK$", "sgd": "S$", "mxn": "MX$", "brl": "R$",
    ]
}
