/// One line of an invoice (SPEC §2 steps 1–3).
public struct InvoiceLine: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A plan's base fee for one segment of the period, prorated by time.
        case base
        /// A metric's usage charge (SPEC §4's name for every model's lines).
        case overage
        /// Late usage for an already invoiced period: charge with it minus what was billed.
        case lateUsageAdjustment = "adjustment"
    }

    public let kind: Kind
    /// The metric for overage and adjustment lines; nil for base fees.
    public let metric: String?
    /// What finance reads on the invoice (wording in `InvoiceCalculator`, dates and
    /// numbers by `InvoiceText`).
    public let description: String
    /// Base: 1 (the segment). Overage: units above the quota. Adjustment: the billable
    /// units the late usage adds (negative when a `latest` reading went down).
    /// quantity × unit price is the amount up to the ceiling of a fractional cent.
    public let quantity: Quantity
    /// Base: the segment's fee (the full period's fee unless prorated). Overage and
    /// adjustment: the price of the line's units, cents per unit (or per package; or the
    /// adjustment's amount for its one unit).
    public let unitPrice: UnitPrice
    /// What the line adds to the subtotal; only adjustments may be negative.
    public let amount: Cents
    /// The span the line bills: a plan segment, or the earlier period adjusted.
    public let period: Period
}

/// An invoice's figures for one period, before it is numbered and stored.
public struct InvoiceDraft: Sendable, Hashable {
    public let period: Period
    public let lines: [InvoiceLine]
    public let subtotal: Cents
    public let taxBasisPoints: Int
    public let tax: Cents
    public let total: Cents

    init(period: Period, lines: [InvoiceLine], taxBasisPoints: Int) throws(BillingError) {
        precondition((0...10_000).contains(taxBasisPoints), "a tax rate is between 0 and 100 %")
        self.period = period
        self.lines = lines
        var subtotal = Cents.zero
        for line in lines { subtotal = try Cents.adding(subtotal, line.amount, what: "the subtotal") }
        self.subtotal = subtotal
        self.taxBasisPoints = taxBasisPoints
        self.tax = Rounding.tax(on: subtotal, basisPoints: taxBasisPoints)
        self.total = try Cents.adding(subtotal, tax, what: "the total")
    }
}

/// Usage that arrived after its period was invoiced, per metric (SPEC §2 step 3).
public struct LateUsage: Sendable, Hashable {
    /// The earlier period the usage belongs to.
    public let period: Period
    public let metric: String
    /// The value that period was billed with.
    public let billedValue: Quantity
    /// The value with the late events included.
    public let currentValue: Quantity
    /// The plan that priced that period (in force at its end).
    public let plan: Plan

    public init(period: Period, metric: String, billedValue: Quantity, currentValue: Quantity, plan: Plan) {
        self.period = period
        self.metric = metric
        self.billedValue = billedValue
        self.currentValue = currentValue
        self.plan = plan
    }

    /// charge(value with late events) − charge(value billed); may be negative when a
    /// `latest` metric's newest reading went down.
    public func adjustment() throws(BillingError) -> Cents {
        try plan.charge(metric: metric, value: currentValue) - plan.charge(metric: metric, value: billedValue)
    }

    /// The billable units the late usage adds: max(0, current − quota) − max(0, billed −
    /// quota), zero for a metric without a priced quota. Times the overage rate it is
    /// `adjustment` before each charge's rounding up to a cent, so the two differ by
    /// less than a cent.
    public var additionalBillableUnits: Quantity {
        let terms = plan.terms[metric]
        let billable = { (value: Quantity) in terms?.overage(of: value) ?? .zero }
        return billable(currentValue) - billable(billedValue)
    }
}

/// Computes invoices from a subscription's timeline and its usage values: SPEC §2
/// steps 1–4. Pure: values and instants are parameters.
public enum InvoiceCalculator {
    /// The invoice of one billing period.
    /// - Parameters:
    ///   - values: each metric's aggregated value over the whole billed span.
    ///   - lateUsage: adjustments for earlier periods to bill on this invoice.
    ///   - taxBasisPoints: the tenant's tax rate (725 = 7.25 %).
    public static func invoice(
        for period: BillingPeriod, of subscription: Subscription, values: [String: Quantity],
        lateUsage: [LateUsage] = [], taxBasisPoints: Int
    ) throws(BillingError) -> InvoiceDraft {
        var lines = baseLines(for: period, of: subscription)
        lines += try overageLines(plan: subscription.pricingPlan(of: period), values: values, period: period.billed)
        lines += try adjustmentLines(lateUsage)
        return try InvoiceDraft(period: period.billed, lines: lines, taxBasisPoints: taxBasisPoints)
    }

    /// An invoice of adjustments only: late usage of a subscription that has ended
    /// (SPEC §2 step 3: "the next billing run issues an adjustment invoice").
    public static func adjustmentInvoice(period: Period, lateUsage: [LateUsage], taxBasisPoints: Int) throws(BillingError) -> InvoiceDraft {
        try InvoiceDraft(period: period, lines: adjustmentLines(lateUsage), taxBasisPoints: taxBasisPoints)
    }

    /// The invoice the open period would produce if it ended with the usage so far:
    /// the "upcoming invoice" (values are what has been counted up to `asOf`).
    public static func upcomingInvoice(
        of subscription: Subscription, asOf: Instant, values: [String: Quantity], lateUsage: [LateUsage] = [],
        taxBasisPoints: Int
    ) throws(BillingError) -> InvoiceDraft? {
        guard let period = subscription.billingPeriod(containing: asOf) else { return nil }
        return try invoice(for: period, of: subscription, values: values, lateUsage: lateUsage, taxBasisPoints: taxBasisPoints)
    }

    /// Step 1: round-half-up(base × segment length / full period length) per segment.
    /// One unit priced at the segment's amount, so the row adds up on the invoice (as
    /// Stripe prints proration); the description names the segment and says "prorated".
    public static func baseLines(for period: BillingPeriod, of subscription: Subscription) -> [InvoiceLine] {
        let fullLength = Int128(period.calendarPeriod.duration)
        return subscription.segments(of: period).map { segment in
            let length = Int128(segment.span.duration)
            let prorated = length != fullLength
            let amount = Rounding.halfUp(Int128(segment.plan.baseFee.value) * length, dividedBy: fullLength)
            return InvoiceLine(
                kind: .base, metric: nil,
                description: "\(segment.plan.name) plan, \(InvoiceText.period(segment.span))\(prorated ? " (prorated)" : "")",
                quantity: Quantity(units: 1), unitPrice: UnitPrice(cents: amount.value),
                amount: amount, period: segment.span)
        }
    }

    /// Step 2: each metric's usage charge, in metric-name order: one line for a
    /// standard, volume or package charge, one per tier used for a graduated one;
    /// metrics charging nothing (within their quota, a free rate) get no line.
    public static func overageLines(plan: Plan, values: [String: Quantity], period: Period) throws(BillingError) -> [InvoiceLine] {
        try plan.usageCharges(for: values).flatMap { metric, value, lines in
            lines.map { line in
                InvoiceLine(
                    kind: .overage, metric: metric,
                    description: describe(
                        line, metric: metric, value: value, model: plan.terms[metric]?.charge, currency: Currency(code: plan.currency) ?? .usd),
                    quantity: line.units, unitPrice: line.unitPrice, amount: line.amount, period: period)
            }
        }
    }

    /// What finance reads for one charge line: the value used and what the line prices of it.
    /// A flat fee is money of the plan's currency, written as every amount is (`$5.00`,
    /// `¥7`, `KWD 0.007`): it read "0.07" in every currency, a hundredth of ¥7.
    static func describe(_ line: ChargeLine, metric: String, value: Quantity, model: ChargeModel?, currency: Currency = .usd) -> String {
        let used = "\(metric): \(value.groupedDescription) used"
        let flat = line.flat > .zero ? ", plus \(currency.symbol)\(currency.format(line.flat)) flat" : ""
        let tier = line.tier.map { "tier \($0 + 1)" } ?? ""
        let span =
            line.tierEnd.map { "\(line.tierStart.groupedDescription)–\($0.groupedDescription)" }
            ?? "above \(line.tierStart.groupedDescription)"
        switch model {
        case .graduated: return "\(used), \(tier) (\(span))\(flat)"
        case .volume: return "\(used), every unit at \(tier) (\(span))\(flat)"
        case .package:
            let packages = line.packages.map { ", \($0.billable.groupedDescription) billed in packages of \($0.size.groupedDescription)" } ?? ""
            return "\(used), \(model?.included.groupedDescription ?? "0") included\(packages)"
        case .standard, nil: return "\(used), \(model?.included.groupedDescription ?? "0") included"
        }
    }

    /// Step 3: one line per (earlier period, metric) whose charge changed, for
    /// charge(new) − charge(billed) with the metric's whole charge function. A standard
    /// charge shows the billable units the late usage adds at its rate; the tiered and
    /// package models, whose price per unit depends on the whole value, one unit priced
    /// at the difference.
    public static func adjustmentLines(_ lateUsage: [LateUsage]) throws(BillingError) -> [InvoiceLine] {
        var lines: [InvoiceLine] = []
        for late in lateUsage.sorted(by: { ($0.period.start, $0.metric) < ($1.period.start, $1.metric) }) {
            let amount = try late.adjustment()
            guard amount != .zero else { continue }
            let standard: Bool
            if case .standard = late.plan.terms[late.metric]?.charge { standard = true } else { standard = false }
            lines.append(
                InvoiceLine(
                    kind: .lateUsageAdjustment, metric: late.metric,
                    description: "\(late.metric): late usage for \(InvoiceText.period(late.period)) — "
                        + "\(late.currentValue.groupedDescription) used, \(late.billedValue.groupedDescription) billed before",
                    quantity: standard ? late.additionalBillableUnits : Quantity(units: 1),
                    unitPrice: standard ? late.plan.terms[late.metric]?.overageRate ?? .zero : UnitPrice(cents: amount.value),
                    amount: amount, period: late.period))
        }
        return lines
    }
}
