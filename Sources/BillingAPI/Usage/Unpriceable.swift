import BillingEngine
import HTTPTypes
import TallyHTTP

extension APIError {
    /// 422 for a period whose charges do not fit what an invoice holds (64-bit cents): the
    /// usage statement, the upcoming invoice and the dashboard's pages say so, naming what
    /// still reads, instead of a 500.
    static func unpriceable(_ error: BillingError, what: String) -> APIError {
        APIError(
            .unprocessableContent, code: "AMOUNT_OUT_OF_RANGE",
            message: "\(what) cannot be priced: \(error). GET /v1/usage with from and to gives the values without prices.")
    }
}
