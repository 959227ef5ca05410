import Foundation
import Hummingbird

/// Cursor pagination of a list endpoint, as Stripe's API has it: `limit` (1–100, default
/// 10) items after the one `starting_after` names, and `has_more` when more follow. The
/// cursor is an id, so a page never skips or repeats an item when items are added before it.
public struct PageRequest: Sendable, Equatable {
    public static let defaultLimit = 10
    public static let maximumLimit = 100

    public let limit: Int
    /// The id of the last item of the previous page.
    public let startingAfter: UUID?

    public init(limit: Int = PageRequest.defaultLimit, startingAfter: UUID? = nil) {
        self.limit = limit
        self.startingAfter = startingAfter
    }

    /// `limit` and `starting_after` from the query; a 400 naming the field when invalid.
    public init(_ query: Parameters) throws {
        var limit = Self.defaultLimit
        if let text = query.get("limit") {
            guard let value = Int(text), (1...Self.maximumLimit).contains(value) else {
                throw APIError.invalid("limit", "must be a whole number from 1 to \(Self.maximumLimit)")
            }
            limit = value
        }
        var after: UUID?
        if let text = query.get("starting_after") {
            guard let id = UUID(uuidString: text) else {
                throw APIError.invalid("starting_after", "must be the id of the last item of the previous page")
            }
            after = id
        }
        self.init(limit: limit, startingAfter: after)
    }

    /// The page of `items` (the whole list, in its order) this request asks for. A cursor
    /// that names no item of the list is a 400: it is another list's, or another tenant's.
    public func page<Item>(of items: [Item], id: (Item) -> UUID) throws -> Page<Item> {
        var start = 0
        if let startingAfter {
            guard let index = items.firstIndex(where: { id($0) == startingAfter }) else { throw Self.unknownCursor }
            start = index + 1
        }
        let end = min(items.count, start + limit)
        return Page(data: Array(items[start..<end]), hasMore: end < items.count)
    }

    /// The page from `fetched`, read with `LIMIT limit + 1` after the cursor: the extra row
    /// only says that more follow.
    public func page<Item>(fetched: [Item]) -> Page<Item> {
        Page(data: Array(fetched.prefix(limit)), hasMore: fetched.count > limit)
    }

    public static let unknownCursor = APIError.invalid(
        "starting_after", "names no item of this list; pass the id of the last item of the previous page")
}

/// One page of a list: `{"data": [...], "has_more": bool}`.
public struct Page<Item>: Sendable where Item: Sendable {
    public let data: [Item]
    public let hasMore: Bool

    public init(data: [Item], hasMore: Bool) {
        self.data = data
        self.hasMore = hasMore
    }

    public func map<Other>(_ transform: (Item) throws -> Other) rethrows -> Page<Other> {
        Page<Other>(data: try data.map(transform), hasMore: hasMore)
    }
}

extension Page: ResponseGenerator, ResponseEncodable where Item: Encodable {}

extension Page: Encodable where Item: Encodable {
    enum CodingKeys: String, CodingKey {
        case data
        case hasMore = "has_more"
    }
}
