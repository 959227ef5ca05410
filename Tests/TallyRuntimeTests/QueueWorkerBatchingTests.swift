import Foundation
import Logging
import RabbitMQClient
import Synchronization
import TallyMessaging
import TallyRuntime
import TallyTestSupport
import Testing

/// How the shared worker loop forms batches (over the real broker): what has arrived is
/// taken at once; the linger — waiting for more — only once a backlog shows.
@Suite("Shared worker loop: batches")
struct QueueWorkerBatchingTests {
    static let logger = Logger(label: "test.worker")

    /// Records each batch's bodies.
    final class Recorder: QueueWorkHandler {
        let batches = Mutex<[[String]]>([])
        /// Batches (by their index) the handler holds until released.
        let held = Mutex<Set<Int>>([])
        /// The size asked for after each batch (by its index; none after the others).
        let asks = Mutex<[Int: Int]>([:])

        /// Whether batches of first deliveries are fed as they arrive (`DeliveryFeed`).
        let streamsBatches: Bool
        /// When set, a fed batch has each body dropped once read (but that of "poison",
        /// reported poisoned), and fails.
        let failsReleasing = Mutex(false)
        /// The bodies of each fed batch that failed so.
        let released = Mutex<[[String]]>([])
        /// The bodies of the deliveries marked redelivered, as handled.
        let redelivered = Mutex<[String]>([])

        var handled: Int { batches.withLock { $0.reduce(0) { $0 + $1.count } } }

        init(streamsBatches: Bool = false) {
            self.streamsBatches = streamsBatches
        }

        func process(_ feed: DeliveryFeed, in session: Int, logger: Logger) async -> WorkOutcome {
            guard failsReleasing.withLock({ $0 }) else {
                while await feed.next() != nil {}
                return await process(feed.deliveries, in: session, logger: logger)
            }
            var bodies: [String] = []
            while let delivery = await feed.next() {
                bodies.append(String(decoding: delivery.body, as: UTF8.self))
                if bodies.last != "poison" { feed.releaseBody(at: bodies.count - 1) }
            }
            released.withLock { $0.append(bodies) }
            let poisoned = feed.deliveries.filter { !$0.body.isEmpty }.map {
                WorkOutcome.Poisoned(deliveryTag: $0.deliveryTag, reason: "test poison")
            }
            return WorkOutcome(poisoned: poisoned, failure: .failed("test failure after the bodies were read"))
        }

        func openSession(consumer: Int, logger: Logger, shouldStop: @escaping @Sendable () -> Bool) async -> Int? { consumer }
        func closeSession(_ session: Int) async {}
        func process(_ deliveries: [Delivery], in session: Int, logger: Logger) async -> WorkOutcome {
            // "m<i>", without the padding some tests add.
            let bodies = deliveries.map { String(decoding: $0.body.prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self) }
            redelivered.withLock { $0 += zip(deliveries, bodies).filter { $0.0.redelivered }.map(\.1) }
            let index = batches.withLock { batches in
                batches.append(bodies)
                return batches.count - 1
            }
            while held.withLock({ $0.contains(index) }) { try? await Task.sleep(for: .milliseconds(10)) }
            return WorkOutcome(nextBatchBytes: asks.withLock { $0[index] })
        }

        /// Polls until `count` messages were handled; records an issue after `limit` (a
        /// guard against hanging, minutes — not a performance bound).
        func waitUntilHandled(_ count: Int, limit: Duration = .seconds(120), _ what: String) async throws {
            try await waitUntil(what, limit: limit) { handled >= count }
        }
    }

    /// Polls until `condition` holds; records an issue after `limit` (a guard against
    /// hanging, minutes — not a performance bound).
    static func waitUntil(_ what: String, limit: Duration = .seconds(120), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while try await !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("gave up waiting: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// What a test body gets: publishing `m<i>` for each i of a range, the messages ready
    /// in the queue (not yet delivered) and those delivered but not acked, and the handler.
    struct Worker: Sendable {
        /// Publishes `m<i>` for each i of the range, each followed by `padding` spaces.
        let publish: @Sendable (Range<Int>, _ padding: Int) async throws -> Void
        /// Publishes each body as it is.
        let publishBodies: @Sendable ([String]) async throws -> Void
        let ready: @Sendable () async throws -> Int
        /// The messages in the queue's parking lot, taken out (bodies and reasons).
        let takeParked: @Sendable () async throws -> [(body: String, reason: String?)]
        let unacked: @Sendable () async throws -> Int
        let recorder: Recorder
    }

    /// A worker of one consumer on a queue of its own, `body` run while it consumes; the
    /// queue is deleted afterwards.
    func withWorker(
        prefetch: UInt16, linger: Duration, batchBytes: Int = 256 << 20, maxBatchBytes: Int = 0, streams: Bool = false,
        _ body: (Worker) async throws -> Void
    ) async throws {
        let queue = "test.worker.\(UUID().uuidString.prefix(8).lowercased())"
        let amqp = try AMQPConfiguration(url: TestEnvironment.amqpURL, connectionName: "tally-test-worker")
        var settings = QueueWorkerSettings(name: "test-worker", queue: queue)
        settings.consumers = 1
        settings.prefetch = prefetch
        settings.maxBatch = Int(prefetch)
        settings.linger = linger
        settings.batchBytes = batchBytes
        settings.maxBatchBytes = maxBatchBytes
        // A work queue as Tally's are (quorum, with its parking lot and retry queues).
        settings.topology = Topology(exchanges: [], queues: [], bindings: []).adding(
            workQueue: queue, boundTo: nil, routingKey: queue, retry: settings.retry)
        let parkingLot = settings.retry.parkingQueue(for: queue)
        let admin = try await AMQPConnection.connect(configuration: amqp, logger: Self.logger)
        try await admin.openChannel(1)
        try await settings.topology.declare(on: admin)
        let publisher = ConfirmedPublisher(configuration: amqp, logger: Self.logger)
        let recorder = Recorder(streamsBatches: streams)
        let worker = QueueWorker(settings: settings, amqp: amqp, handler: recorder, publisher: publisher, logger: Self.logger)
        let context = Worker(
            publish: { range, padding in
                try await publisher.publish(
                    range.map {
                        OutgoingMessage(
                            exchange: "", routingKey: queue, body: Array("m\($0)".utf8) + Array(repeating: UInt8(ascii: " "), count: padding),
                            mandatory: true)
                    })
            },
            publishBodies: { bodies in
                try await publisher.publish(
                    bodies.map { OutgoingMessage(exchange: "", routingKey: queue, body: Array($0.utf8), mandatory: true) })
            },
            ready: { Int(try await admin.declareQueue(queue, passive: true)) },
            takeParked: {
                let reader = try await AMQPConnection.connect(configuration: amqp, logger: Self.logger)
                try await reader.openChannel(1)
                _ = try await reader.consume(parkingLot)
                var parked: [(body: String, reason: String?)] = []
                while let message = try await reader.nextDelivery(timeout: .seconds(1)) {
                    try await reader.ack(message.deliveryTag)
                    parked.append((String(decoding: message.body, as: UTF8.self), message.properties.headers[HeaderName.parkReason]?.stringValue))
                }
                await reader.close()
                return parked
            },
            unacked: {
                let lines = try await TestEnvironment.output(
                    of: TestEnvironment.rabbitmqctl, ["-q", "list_queues", "name", "messages_unacknowledged"])
                let row = lines.split(separator: "\n").map { $0.split(whereSeparator: \.isWhitespace) }.first { $0.first.map(String.init) == queue }
                return row.flatMap { $0.last.flatMap { Int($0) } } ?? -1
            },
            recorder: recorder)
        try await withCleanup {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await worker.run() }
                defer { group.cancelAll() }
                try await body(context)
            }
        } cleanup: {
            for declared in settings.topology.queues { try await admin.deleteQueue(declared.name) }
            await admin.close()
            await publisher.close()
        }
    }

    @Test(
        "a message arriving alone is handled at once, not held for the linger time (collected whole, and fed as it arrives)",
        arguments: [false, true])
    func loneMessageAtOnce(streams: Bool) async throws {
        // An hour's linger: were it applied to a lone message, the wait below would give up
        // and the three would come in one batch.
        try await withWorker(prefetch: 16, linger: .seconds(3600), streams: streams) { worker in
            for index in 0..<3 {
                try await worker.publish(index..<(index + 1), 0)
                try await worker.recorder.waitUntilHandled(index + 1, "message \(index) handled while no other came")
            }
            #expect(worker.recorder.batches.withLock { $0 } == [["m0"], ["m1"], ["m2"]])
        }
    }

    @Test(
        "with a backlog beyond the prefetch the batches are full and in order; the last, nothing left in the queue, goes at once (collected whole, and fed as it arrives)",
        arguments: [false, true])
    func backlogFillsBatches(streams: Bool) async throws {
        try await withWorker(prefetch: 4, linger: .seconds(60), streams: streams) { worker in
            let recorder = worker.recorder
            recorder.held.withLock { $0 = [0] }
            // Batch 0: m0 alone, held; m1…m3 fill the prefetch behind it, m4…m9 wait in the queue.
            try await worker.publish(0..<1, 0)
            try await recorder.waitUntilHandled(1, "m0")
            try await worker.publish(1..<10, 0)
            try await Self.waitUntil("m1…m3 delivered, m4…m9 ready") {
                let (unacked, ready) = (try await worker.unacked(), try await worker.ready())
                return unacked == 4 && ready == 6
            }
            recorder.held.withLock { _ = $0.remove(0) }
            // Batch 1 takes m1…m3 and, the queue holding more, waits for m4 (sent once m0 is
            // acked); batch 2 likewise. m9, the last, goes alone at once: nothing more in the
            // queue, no wait (with the 60 s linger the guard below would give up first).
            try await recorder.waitUntilHandled(10, limit: .seconds(30), "m0…m9")
            #expect(
                recorder.batches.withLock { $0 }
                    == [["m0"], ["m1", "m2", "m3", "m4"], ["m5", "m6", "m7", "m8"], ["m9"]])
        }
    }

    @Test("a batch closes at the size the handler asked for after the last one, kept within the settings' bounds")
    func handlerSizesBatches() async throws {
        // Messages of 1,024 bytes ("m1" and 1,022 spaces; "m10" on are 1,025): two fill a
        // batch of 2,048 bytes, four one of the 4,096 allowed at most.
        try await withWorker(prefetch: 16, linger: .zero, batchBytes: 2048, maxBatchBytes: 4096) { worker in
            let recorder = worker.recorder
            recorder.held.withLock { $0 = [0] }
            // After m0: far more than allowed (4,096 then); after the next batch far less
            // (2,048 then); after the others nothing (the size stays).
            recorder.asks.withLock { $0 = [0: 1 << 20, 1: 1] }
            try await worker.publish(0..<1, 1022)
            try await recorder.waitUntilHandled(1, "m0")
            try await worker.publish(1..<13, 1022)
            // All delivered before m0's batch ends: each batch is then what has arrived, up to its size.
            try await Self.waitUntil("m1…m12 delivered") { try await worker.unacked() == 13 }
            recorder.held.withLock { _ = $0.remove(0) }
            try await recorder.waitUntilHandled(13, limit: .seconds(30), "m0…m12")
            #expect(
                recorder.batches.withLock { $0 }
                    == [["m0"], ["m1", "m2", "m3", "m4"], ["m5", "m6"], ["m7", "m8"], ["m9", "m10"], ["m11", "m12"]])
        }
    }

    @Test(
        "a fed batch that fails after its handler dropped the bodies is requeued (the poisoned message parked with its body), then collected whole again, redelivered, bodies kept"
    )
    func releasedBodiesRequeued() async throws {
        try await withWorker(prefetch: 8, linger: .zero, streams: true) { worker in
            let recorder = worker.recorder
            recorder.held.withLock { $0 = [0] }
            // m0 alone, held while the rest arrive behind it.
            try await worker.publish(0..<1, 0)
            try await recorder.waitUntilHandled(1, "m0")
            recorder.failsReleasing.withLock { $0 = true }
            try await worker.publishBodies(["a", "poison", "b"])
            try await Self.waitUntil("a, poison and b delivered") { try await worker.unacked() == 4 }
            recorder.held.withLock { _ = $0.remove(0) }
            // The three come first as one batch, released and failed; a and b come back
            // marked redelivered and are handled with their bodies.
            try await recorder.waitUntilHandled(3, limit: .seconds(60), "a and b handled again")
            #expect(recorder.released.withLock { $0 } == [["a", "poison", "b"]])
            #expect(recorder.redelivered.withLock { $0 }.sorted() == ["a", "b"])
            #expect(recorder.batches.withLock { $0 }.flatMap { $0 }.sorted() == ["a", "b", "m0"])
            try await Self.waitUntil("nothing left unacked") {
                let (unacked, ready) = (try await worker.unacked(), try await worker.ready())
                return unacked == 0 && ready == 0
            }
            let parked = try await worker.takeParked()
            #expect(parked.map(\.body) == ["poison"])
            #expect(parked.first?.reason == "test poison")
        }
    }
}
