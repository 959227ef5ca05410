import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TallyRuntime
import TallyTestSupport
import Testing

@testable import BillingAPI

/// `GET /metrics` of the billing API: requests by route template, method and status,
/// their durations, and the 401s, in Prometheus' text format.
@Suite("Billing API: /metrics")
struct MetricsAPITests: BillingAPITestCase {
    let adminToken = "test-admin-\(UUID().uuidString)"

    /// The value of the sample `line` starts with (`name{labels}`), or nil.
    func sample(_ text: String, _ prefix: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    @Test("requests are counted by route template (not by id), method and status; durations per route; 401s by reason")
    func countsByRoute() async throws {
        try await app().test(.router) { client in
            let tenant = try await createTenant(client)
            for _ in 0..<3 {
                try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get, headers: bearer(adminToken)) { #expect($0.status == .ok) }
            }
            try await client.execute(uri: "/v1/tenants/\(UUID())", method: .get, headers: bearer(adminToken)) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v1/tenants/\(tenant.id)", method: .get) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/no/such/route", method: .get, headers: bearer(adminToken)) { #expect($0.status == .notFound) }
            // Public: Prometheus scrapes it without a key.
            let text = try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == PrometheusText.contentType)
                return String(buffer: response.body)
            }
            let route = "/v1/tenants/{tenantID}"
            #expect(sample(text, #"tally_api_requests_total{route="\#(route)",method="GET",status="200"}"#) == 3)
            #expect(sample(text, #"tally_api_requests_total{route="\#(route)",method="GET",status="404"}"#) == 1)
            #expect(sample(text, #"tally_api_requests_total{route="\#(route)",method="GET",status="401"}"#) == 1)
            #expect(sample(text, #"tally_api_requests_total{route="/v1/tenants",method="POST",status="201"}"#) == 1)
            #expect(sample(text, #"tally_api_requests_total{route="unmatched",method="GET",status="404"}"#) == 1)
            #expect(!text.contains(tenant.id), "ids must not become labels")
            #expect(sample(text, #"tally_api_request_duration_seconds_count{route="\#(route)"}"#) == 5)
            #expect(sample(text, #"tally_api_request_duration_seconds_bucket{route="\#(route)",le="+Inf"}"#) == 5)
            #expect(sample(text, #"tally_http_unauthorized_total{reason="missing_token"}"#) == 1)
            #expect(text.contains("# TYPE tally_api_request_duration_seconds histogram\n"))
        }
    }

    @Test("the exposition writer: cumulative histogram buckets, escaped label values, one HELP and TYPE per family")
    func exposition() {
        var histogram = PrometheusText.Histogram(bounds: [0.1, 1])
        for value in [0.05, 0.1, 0.5, 3] { histogram.observe(value) }
        var text = PrometheusText()
        text.histogram("x_seconds", "help", bounds: [0.1, 1], [([("route", #"a"b\c"#)], histogram)])
        text.family("y_total", "counter", "two samples", [([("k", "line\nbreak")], "1"), ([], "2")])
        #expect(
            text.text == """
                # HELP x_seconds help
                # TYPE x_seconds histogram
                x_seconds_bucket{route="a\\"b\\\\c",le="0.1"} 2
                x_seconds_bucket{route="a\\"b\\\\c",le="1"} 3
                x_seconds_bucket{route="a\\"b\\\\c",le="+Inf"} 4
                x_seconds_sum{route="a\\"b\\\\c"} 3.65
                x_seconds_count{route="a\\"b\\\\c"} 4
                # HELP y_total two samples
                # TYPE y_total counter
                y_total{k="line\\nbreak"} 1
                y_total 2

                """)
    }
}
