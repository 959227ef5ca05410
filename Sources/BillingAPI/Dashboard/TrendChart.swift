import BillingEngine
import Foundation
import Notifications
import TallyStore

/// The trend chart, drawn on the server as SVG: one line per metric over the buckets of a
/// usage history, a y axis from zero to a round maximum with its unit, bucket labels on
/// the x axis and a legend. Positions are display geometry (doubles); the numbers the
/// chart stands for are in the table beside it, exact.
struct TrendChart {
    let history: UsageHistory
    /// The unit of each metric (`billable_metrics.unit`), shown in the legend.
    let units: [String: String]
    let width = 720.0
    let left = 64.0
    let right = 32.0
    let top = 16.0
    /// Legend rows of three metrics; beyond two, the chart grows to hold them.
    var legendRows: Int { (history.series.count + 2) / 3 }
    var extraRows: Double { Double(max(0, legendRows - 2)) * 14 }
    var height: Double { 300 + extraRows }
    var bottom: Double { 64 + extraRows }

    static let colors = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"]

    var svg: String {
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        let maximum = Self.roundedUp(history.series.flatMap(\.values).max() ?? .zero)
        let count = max(history.buckets.count, 1)
        func x(_ index: Int) -> Double { left + plotWidth * (count == 1 ? 0.5 : Double(index) / Double(count - 1)) }
        func y(_ value: Double) -> Double { top + plotHeight * (1 - value / maximum) }

        var parts = [
            #"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \#(Int(width)) \#(Int(height))" role="img" aria-labelledby="trend-title">"#,
            #"<title id="trend-title">Usage per \#(history.granularity.rawValue), one line per metric</title>"#,
        ]
        for step in 0...4 {
            let value = maximum * Double(step) / 4
            let position = y(value)
            parts.append(#"<line x1="\#(left)" x2="\#(width - right)" y1="\#(position)" y2="\#(position)" stroke="rgb(230,233,238)"/>"#)
            parts.append(
                #"<text x="\#(left - 6)" y="\#(position + 4)" text-anchor="end" font-size="11" fill="rgb(91,101,117)">\#(Self.axisNumber(value))</text>"#
            )
        }
        parts.append(#"<line x1="\#(left)" x2="\#(left)" y1="\#(top)" y2="\#(top + plotHeight)" stroke="rgb(138,147,163)"/>"#)
        parts.append(#"<line x1="\#(left)" x2="\#(width - right)" y1="\#(top + plotHeight)" y2="\#(top + plotHeight)" stroke="rgb(138,147,163)"/>"#)
        parts.append(
            #"<text x="12" y="\#(top + plotHeight / 2)" transform="rotate(-90 12 \#(top + plotHeight / 2))" text-anchor="middle" font-size="11" fill="rgb(91,101,117)">units per \#(history.granularity.rawValue)</text>"#
        )
        let labelEvery = max(1, count / 6)
        for index in stride(from: 0, to: history.buckets.count, by: labelEvery) {
            parts.append(
                #"<text x="\#(x(index))" y="\#(top + plotHeight + 16)" text-anchor="middle" font-size="11" fill="rgb(91,101,117)">\#(HTMLText.escape(Self.label(history.buckets[index], history.granularity)))</text>"#
            )
        }
        for (number, series) in history.series.enumerated() {
            let color = Self.colors[number % Self.colors.count]
            // Past the eighth metric the colours come round again, dashed this time.
            let dash = number >= Self.colors.count ? #" stroke-dasharray="6 3""# : ""
            let points = series.values.enumerated().map { index, value in "\(x(index)),\(y(Self.double(value)))" }
            parts.append(
                #"<polyline data-metric="\#(HTMLText.escape(series.metric))" fill="none" stroke="\#(color)" stroke-width="2"\#(dash) points="\#(points.joined(separator: " "))"/>"#
            )
            // One bucket is one point, which a line does not draw.
            if count == 1, let value = series.values.first {
                parts.append(#"<circle cx="\#(x(0))" cy="\#(y(Self.double(value)))" r="4" fill="\#(color)"/>"#)
            }
            let legendX = left + Double(number % 3) * 210
            let legendY = top + plotHeight + 38 + Double(number / 3) * 14
            let unit = units[series.metric].map { " (\($0))" } ?? ""
            parts.append(#"<rect x="\#(legendX)" y="\#(legendY - 8)" width="10" height="10" fill="\#(color)"/>"#)
            parts.append(
                #"<text x="\#(legendX + 14)" y="\#(legendY + 1)" font-size="11" fill="rgb(29,36,48)">\#(HTMLText.escape(series.metric + unit))</text>"#
            )
        }
        parts.append("</svg>")
        return parts.joined(separator: "\n")
    }

    /// A bucket as a label: `Nov 30` for days, `Nov 30 14:00` for hours (UTC).
    static func label(_ bucket: Instant, _ granularity: UsageHistory.Granularity) -> String {
        let day = String(InvoiceText.day(bucket).split(separator: ",")[0])
        guard granularity == .hour else { return day }
        let hour = (bucket.microsecondsSinceEpoch / 3_600_000_000) % 24
        return day + String(format: " %02d:00", hour)
    }

    /// The axis maximum: the largest value rounded up to 1, 2 or 5 times a power of ten (1 when there is no usage).
    static func roundedUp(_ value: Quantity) -> Double {
        let largest = double(value)
        guard largest > 0 else { return 1 }
        let power = pow(10, floor(log10(largest)))
        for step in [1.0, 2.0, 5.0, 10.0] where largest <= step * power { return step * power }
        return 10 * power
    }

    static func double(_ value: Quantity) -> Double { Double(value.description) ?? 0 }

    static func axisNumber(_ value: Double) -> String {
        value == value.rounded() ? String(format: "%.0f", value) : String(format: "%g", value)
    }

}
