import Foundation
import TallyTestSupport

/// A reproducible stream of usage messages for exactness tests: unique events over
/// some tenants, plus duplicates both inside a message and resent in later messages.
struct UsageWorkload: Sendable {
    /// Message bodies in publishing order.
    let messages: [String]
    /// Unique events per tenant: what the database must hold in the end.
    let expected: [UUID: Int]

    init(tenants: [UUID], unique: Int, duplicatesInside: Int, duplicatesResent: Int, perMessage: Int = 1000, seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let now = TestClock.now()
        var events: [String] = []
        var expected: [UUID: Int] = [:]
        events.reserveCapacity(unique)
        for index in 0..<unique {
            let tenant = tenants[Int(random.next() % UInt64(tenants.count))]
            expected[tenant, default: 0] += 1
            // Times spread over three hours (several rollup rows); some share a millisecond.
            let time = now.addingTimeInterval(-Double(random.next() % 10_800_000) / 1000)
            let metric = index % 10 == 0 ? "users" : "api_calls"
            let quantity = "\"\(random.next() % 50).\(random.next() % 10_000)\""
            events.append(usageEventJSON(id: "w\(seed)-\(index)", tenant: tenant, metric: metric, quantity: quantity, time: time))
        }
        // Duplicates inside a message: an event repeated next to itself.
        var stream: [String] = []
        stream.reserveCapacity(unique + duplicatesInside)
        var insideLeft = duplicatesInside
        for event in events {
            stream.append(event)
            if insideLeft > 0, random.next() % UInt64(max(1, unique / duplicatesInside)) == 0 {
                stream.append(event)
                insideLeft -= 1
            }
        }
        stream += events.prefix(insideLeft)
        var messages = stride(from: 0, to: stream.count, by: perMessage).map {
            "[" + stream[$0..<min($0 + perMessage, stream.count)].joined(separator: ",") + "]"
        }
        // Resent later: events from the first part of the stream, in messages at the end.
        let resent = (0..<duplicatesResent).map { _ in events[Int(random.next() % UInt64(unique))] }
        messages += stride(from: 0, to: resent.count, by: perMessage).map {
            "[" + resent[$0..<min($0 + perMessage, resent.count)].joined(separator: ",") + "]"
        }
        self.messages = messages
        self.expected = expected
    }
}
