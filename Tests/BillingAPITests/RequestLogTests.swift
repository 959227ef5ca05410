import Testing

@testable import TallyHTTP

@Suite("Request log lines")
struct RequestLogTests {
    @Test("a credential put in the query string is not logged; other parameters are, as sent")
    func queryRedacted() {
        #expect(RequestLog.loggable(path: "/v1/billing-runs", query: "access_token=t0p-secret") == "/v1/billing-runs?access_token=***")
        #expect(
            RequestLog.loggable(path: "/v1/usage", query: "tenant_id=abc&API_KEY=tally_x&from=2026-11-01T00:00:00Z&Signature=s&password")
                == "/v1/usage?tenant_id=abc&API_KEY=***&from=2026-11-01T00:00:00Z&Signature=***&password")
        #expect(RequestLog.loggable(path: "/v1/x", query: "access%5Ftoken=t&id=1") == "/v1/x?access%5Ftoken=***&id=1")
        #expect(RequestLog.loggable(path: "/v1/invoices", query: nil) == "/v1/invoices")
        #expect(RequestLog.loggable(path: "/v1/invoices", query: "") == "/v1/invoices")
    }
}
