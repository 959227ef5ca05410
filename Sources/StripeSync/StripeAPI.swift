import CurlClient
import Foundation

/// Where and how to reach Stripe's API.
public struct StripeConfiguration: Sendable {
    /// The secret key, sent as a bearer token; never logged.
    public let apiKey: String
    /// `https://api.stripe.com`, or an emulator (localstripe) in development and tests.
    public let apiBase: String

    public init(apiKey: String, apiBase: String = "https://api.stripe.com") {
        self.apiKey = apiKey
        self.apiBase = apiBase.hasSuffix("/") ? String(apiBase.dropLast()) : apiBase
    }
}

/// The fields of Stripe objects Tally reads (customers, subscriptions, invoice items,
/// invoices, payment methods, plans); every other field is ignored.
public struct StripeObject: Sendable, Decodable, Equatable {
    public struct Card: Sendable, Decodable, Equatable {
        public let brand: String?
        public let last4: String?
        public let expMonth: Int?
        public let expYear: Int?

        enum CodingKeys: String, CodingKey {
            case brand, last4
            case expMonth = "exp_month"
            case expYear = "exp_year"
        }
    }

    public let id: String
    public let object: String?
    public let metadata: [String: String]?
    public let description: String?
    public let email: String?
    public let name: String?
    public let status: String?
    public let total: Int?
    public let amount: Int?
    public let customer: String?
    public let invoice: String?
    public let card: Card?
    /// `true` on a deleted customer Stripe still answers for.
    public let deleted: Bool?
}

/// A page of a Stripe list.
struct StripeList: Decodable {
    let data: [StripeObject]
    let hasMore: Bool?

    enum CodingKeys: String, CodingKey {
        case data
        case hasMore = "has_more"
    }
}

/// A call Stripe answered with an error, or did not answer.
public struct StripeAPIError: Error, CustomStringConvertible, Sendable {
    /// The HTTP status; 0 when no answer arrived.
    public let status: Int
    public let type: String?
    public let code: String?
    public let message: String
    public let method: String
    public let path: String
    /// The server has no such route at all (a 404 that is not a Stripe error object):
    /// an emulator that lacks an endpoint, as localstripe lacks `/finalize`.
    public let isUnknownRoute: Bool

    public var description: String {
        let what = [type, code].compactMap { $0 }.joined(separator: "/")
        return "Stripe \(method) \(path) answered \(status)\(what.isEmpty ? "" : " (\(what))"): \(message)"
    }
}

/// Stripe's REST API over libcurl: form-encoded requests, JSON answers, an
/// `Idempotency-Key` on every POST so that a retried create never makes a second object.
public struct StripeAPI: Sendable {
    public let configuration: StripeConfiguration
    let http: HTTPClient

    public init(configuration: StripeConfiguration) throws {
        self.configuration = configuration
        self.http = try HTTPClient()
    }

    /// GET `path` with `query`; the decoded object.
    func get(_ path: String, _ query: [(String, String)] = []) async throws -> StripeObject {
        try decode(StripeObject.self, try await send("GET", path, query: query))
    }

    /// POST `form` to `path` with `idempotencyKey`; the decoded object.
    func post(_ path: String, _ form: [(String, String)], idempotencyKey: String) async throws -> StripeObject {
        try decode(StripeObject.self, try await send("POST", path, form: form, idempotencyKey: idempotencyKey))
    }

    /// Every object of a list, page after page (100 at a time).
    func list(_ path: String, _ query: [(String, String)]) async throws -> [StripeObject] {
        var objects: [StripeObject] = []
        var after: String?
        while true {
            var page = query + [("limit", "100")]
            if let after { page.append(("starting_after", after)) }
            let list = try decode(StripeList.self, try await send("GET", path, query: page))
            objects += list.data
            guard list.hasMore == true, let last = list.data.last else { return objects }
            after = last.id
        }
    }

    /// Any call, answer ignored but for errors (a DELETE).
    func send(method: String, path: String) async throws -> Data {
        try await send(method, path)
    }

    private func send(
        _ method: String, _ path: String, query: [(String, String)] = [], form: [(String, String)] = [], idempotencyKey: String? = nil
    ) async throws -> Data {
        var url = configuration.apiBase + path
        if !query.isEmpty { url += "?" + Self.formEncode(query) }
        var headers: HTTPClient.Headers = [
            "Authorization": "Bearer \(configuration.apiKey)", "Accept": "application/json", "Stripe-Version": "2024-06-20",
        ]
        var body: Data?
        if method == "POST" {
            headers.append("Content-Type", "application/x-www-form-urlencoded")
            body = Data(Self.formEncode(form).utf8)
        }
        if let idempotencyKey { headers.append("Idempotency-Key", idempotencyKey) }
        let response: HTTPClient.Response
        do {
            response = try await http.send(
                .init(method: .init(rawValue: method), url: url, headers: headers, body: body, connectTimeout: .seconds(10), timeout: .seconds(60)))
        } catch {
            throw StripeAPIError(
                status: 0, type: nil, code: nil, message: "no answer: \(error)", method: method, path: path, isUnknownRoute: false)
        }
        guard response.isSuccess else {
            struct Envelope: Decodable {
                struct Detail: Decodable {
                    let type: String?
                    let code: String?
                    let message: String?
                }
                let error: Detail
            }
            let detail = try? JSONDecoder().decode(Envelope.self, from: response.body).error
            let text = String(decoding: response.body.prefix(300), as: UTF8.self)
            throw StripeAPIError(
                status: response.status, type: detail?.type, code: detail?.code, message: detail?.message ?? text, method: method,
                path: path, isUnknownRoute: response.status == 404 && detail == nil)
        }
        return response.body
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw StripeAPIError(
                status: 200, type: nil, code: nil, message: "unreadable answer: \(error)", method: "", path: "", isUnknownRoute: false)
        }
    }

    /// `application/x-www-form-urlencoded`, nested keys written as Stripe reads them
    /// (`metadata[tally_invoice_id]=…`).
    static func formEncode(_ pairs: [(String, String)]) -> String {
        // RFC 3986 unreserved characters only (CharacterSet.alphanumerics would let
        // non-ASCII letters through unencoded).
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return pairs.map { key, value in
            let k = key.addingPercentEncoding(withAllowedCharacters: allowed) ?? key
            let v = value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
            return "\(k)=\(v)"
        }.joined(separator: "&")
    }
}
