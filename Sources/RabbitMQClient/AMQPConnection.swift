import BlockingIO
import CRabbitMQ
import Foundation
import Logging
import Synchronization

/// One AMQP 0-9-1 connection over rabbitmq-c, confined to a dedicated thread.
///
/// rabbitmq-c requires that a connection, its socket and its channels be used by one
/// thread; as an actor on its own `DedicatedThreadExecutor`, every call (and every
/// blocking read) runs on that thread and never on Swift's cooperative pool.
///
/// A broker-initiated `channel.close` or `connection.close` is answered and thrown
/// as an `AMQPError` carrying the reply code and text. Reconnecting is the caller's
/// policy: after an error whose `needsReconnect` is true, `connect` again.
/// Publishing with confirms and consuming belong on separate connections (a confirm
/// arriving on a consuming connection would be mistaken for an unexpected frame).
public actor AMQPConnection {
    private let executor: DedicatedThreadExecutor
    private let configuration: AMQPConfiguration
    private let logger: Logger
    // Only touched on `executor`'s thread (actor isolation).
    private var state: amqp_connection_state_t?
    private var openChannels: Set<UInt16> = []
    private var nextPublishSequence: [UInt16: UInt64] = [:]
    /// Set by `consume`: deliveries may be waiting, which only `nextDelivery` may read.
    private var isConsuming = false
    /// The node this connection reached (one of `configuration.endpoints`).
    public private(set) var endpoint: AMQPConfiguration.Endpoint?
    /// Keeps the connection's heartbeats going between calls (`startKeepAlive`).
    private var keepAlive: Task<Void, Never>?

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private init(configuration: AMQPConfiguration, logger: Logger) {
        self.executor = DedicatedThreadExecutor(name: "amqp")
        self.configuration = configuration
        self.logger = logger
    }

    /// Opens a socket (TLS for `amqps`), logs in and returns the connection.
    public static func connect(configuration: AMQPConfiguration, logger: Logger) async throws -> AMQPConnection {
        let connection = AMQPConnection(configuration: configuration, logger: logger)
        try await connection.open()
        return connection
    }

    isolated deinit {
        keepAlive?.cancel()
        if let state {
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
            _ = amqp_destroy_connection(state)
        }
        executor.shutdown()
    }

    /// Whether the connection is usable as far as this client knows (no error has closed
    /// it). A connection the broker closed while nobody was reading still looks open:
    /// ask `isAlive()` before relying on it.
    public var isOpen: Bool { state != nil }

    /// Whether the connection still works, found out without blocking: reads what the
    /// broker sent while the connection sat idle (heartbeats; a `connection.close`, which
    /// is answered; the end of the socket) and sends a heartbeat when one is due. A dead
    /// connection is dropped (`isOpen` turns false), so a publisher reconnects before
    /// publishing instead of waiting for confirms that can never come.
    public func isAlive() -> Bool {
        guard let state else { return false }
        do {
            try serviceIdle(state)
            return true
        } catch {
            logger.info("amqp connection found dead before use", metadata: ["amqp.target": "\(configuration)", "error": "\(error)"])
            return false
        }
    }

    /// Closes the connection politely.
    public func close() {
        keepAlive?.cancel()
        keepAlive = nil
        guard let state else { return }
        _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        _ = amqp_destroy_connection(state)
        self.state = nil
        openChannels.removeAll()
    }

    // MARK: Channels and topology

    /// Opens channel `id`, optionally in publisher-confirm mode.
    public func openChannel(_ id: UInt16, confirms: Bool = false) throws(AMQPError) {
        let state = try live()
        _ = amqp_channel_open(state, id)
        try check(state, channel: id, "channel.open")
        openChannels.insert(id)
        if confirms {
            _ = amqp_confirm_select(state, id)
            try check(state, channel: id, "confirm.select")
            nextPublishSequence[id] = 1
        }
    }

    /// Declares a durable exchange; declaring it again with the same type is harmless.
    public func declareExchange(_ name: String, type: ExchangeType, durable: Bool = true, channel: UInt16 = 1)
        throws(AMQPError)
    {
        let state = try live()
        let storage = AMQPTableBuilder()
        _ = amqp_exchange_declare(
            state, channel, storage.bytes(name), storage.bytes(type.rawValue), 0, durable ? 1 : 0, 0, 0,
            amqp_empty_table)
        try check(state, channel: channel, "exchange.declare \(name)")
    }

    /// Declares a queue with `arguments` (e.g. `x-queue-type: quorum`) and returns
    /// its message count. With `passive`, only checks that it exists. An `exclusive`
    /// queue belongs to this connection and is deleted with it (per-process
    /// subscriptions such as quota-state broadcasts).
    @discardableResult
    public func declareQueue(
        _ name: String, durable: Bool = true, exclusive: Bool = false, arguments: [String: AMQPFieldValue] = [:],
        passive: Bool = false, channel: UInt16 = 1
    ) throws(AMQPError) -> UInt32 {
        let state = try live()
        let storage = AMQPTableBuilder()
        let ok = amqp_queue_declare(
            state, channel, storage.bytes(name), passive ? 1 : 0, durable ? 1 : 0, exclusive ? 1 : 0,
            exclusive ? 1 : 0, storage.table(arguments))
        try check(state, channel: channel, "queue.declare \(name)")
        return ok?.pointee.message_count ?? 0
    }

    /// Binds `queue` to `exchange` for `routingKey`.
    public func bindQueue(_ queue: String, exchange: String, routingKey: String, channel: UInt16 = 1)
        throws(AMQPError)
    {
        let state = try live()
        let storage = AMQPTableBuilder()
        _ = amqp_queue_bind(
            state, channel, storage.bytes(queue), storage.bytes(exchange), storage.bytes(routingKey), amqp_empty_table)
        try check(state, channel: channel, "queue.bind \(queue)")
    }

    /// Deletes a queue (tests and ops tools).
    public func deleteQueue(_ name: String, channel: UInt16 = 1) throws(AMQPError) {
        let state = try live()
        let storage = AMQPTableBuilder()
        _ = amqp_queue_delete(state, channel, storage.bytes(name), 0, 0)
        try check(state, channel: channel, "queue.delete \(name)")
    }

    /// Drops every ready message of a queue and returns how many there were (benchmarks
    /// and ops tools; never in the billing path).
    @discardableResult
    public func purgeQueue(_ name: String, channel: UInt16 = 1) throws(AMQPError) -> UInt32 {
        let state = try live()
        let storage = AMQPTableBuilder()
        let reply = amqp_queue_purge(state, channel, storage.bytes(name))
        try check(state, channel: channel, "queue.purge \(name)")
        return reply?.pointee.message_count ?? 0
    }

    /// Deletes an exchange (tests and ops tools).
    public func deleteExchange(_ name: String, channel: UInt16 = 1) throws(AMQPError) {
        let state = try live()
        let storage = AMQPTableBuilder()
        _ = amqp_exchange_delete(state, channel, storage.bytes(name), 0)
        try check(state, channel: channel, "exchange.delete \(name)")
    }

    // MARK: Publishing

    /// Publishes every message with all of them in flight at once, then waits for the
    /// broker's confirms (channel opened with `confirms: true`) and returns one
    /// outcome per message, in order. Mandatory messages with no route come back as
    /// `.returned`. Throws `timeout` if confirms stop arriving for `timeout`.
    ///
    /// Before sending anything it reads what arrived while the connection was idle, so
    /// a connection the broker closed fails at once (`connectionClosed`/`connectionLost`,
    /// nothing published) instead of after `timeout`.
    public func publish(
        _ messages: [OutgoingMessage], channel: UInt16 = 1, timeout: Duration = .seconds(30)
    ) throws(AMQPError) -> [PublishOutcome] {
        let state = try live()
        try serviceIdle(state)
        guard let first = nextPublishSequence[channel] else {
            throw AMQPError(.unexpected, message: "channel \(channel) was not opened with confirms")
        }
        var pending = PendingConfirms(first: first, count: messages.count)
        for (offset, message) in messages.enumerated() {
            let storage = AMQPTableBuilder()
            var properties = storage.properties(message.properties)
            let status = amqp_basic_publish(
                state, channel, storage.bytes(message.exchange), storage.bytes(message.routingKey),
                message.mandatory ? 1 : 0, 0, &properties, storage.bytes(message.body))
            guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "basic.publish") }
            if let id = message.properties.messageID { pending.messageIDs[id, default: []].append(offset) }
        }
        nextPublishSequence[channel] = first + UInt64(messages.count)
        try awaitConfirms(&pending, state: state, channel: channel, timeout: timeout)
        return pending.outcomes.map { $0 ?? .nacked }
    }

    private func awaitConfirms(
        _ pending: inout PendingConfirms, state: amqp_connection_state_t, channel: UInt16, timeout: Duration
    ) throws(AMQPError) {
        let deadline = ContinuousClock.now + timeout
        while !pending.isComplete {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw AMQPError(.timeout, message: "\(pending.unconfirmedCount) publishes unconfirmed")
            }
            var frame = amqp_frame_t()
            var wait = timeval(remaining)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &wait)
            if status == AMQP_STATUS_TIMEOUT.rawValue { continue }
            guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "waiting for confirms") }
            guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { continue }
            switch frame.payload.method.id {
            case AMQP_BASIC_ACK_METHOD:
                let ack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                pending.settle(upTo: ack.delivery_tag, multiple: ack.multiple != 0, as: .confirmed)
            case AMQP_BASIC_NACK_METHOD:
                let nack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
                pending.settle(upTo: nack.delivery_tag, multiple: nack.multiple != 0, as: .nacked)
            case AMQP_BASIC_RETURN_METHOD:
                let returned = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
                try readReturned(returned, state: state, channel: frame.channel, into: &pending)
            default:
                try handleUnexpectedMethod(frame, state: state)
            }
        }
    }

    /// A `basic.return` is followed by the message itself; its message_id tells
    /// which publish came back (the broker sends it before that message's ack).
    private func readReturned(
        _ returned: amqp_basic_return_t, state: amqp_connection_state_t, channel: UInt16,
        into pending: inout PendingConfirms
    ) throws(AMQPError) {
        var message = amqp_message_t()
        let reply = amqp_read_message(state, channel, &message, 0)
        defer { amqp_destroy_message(&message) }
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else { throw error(from: reply, "reading a returned message") }
        let outcome = PublishOutcome.returned(replyCode: returned.reply_code, replyText: returned.reply_text.string)
        pending.markReturned(messageID: message.properties.tallyProperties.messageID, as: outcome)
    }

    /// Handles every frame already waiting, without blocking, and releases the frame
    /// memory of earlier calls.
    ///
    /// rabbitmq-c decodes each incoming frame (every confirm, return and heartbeat) into
    /// its channel's memory pool and frees a pool only in `amqp_maybe_release_buffers`;
    /// a publishing connection that never consumes would grow with every confirm. It is
    /// safe here: between calls nothing refers to a decoded frame (confirm outcomes and
    /// reply texts were copied out), and the library itself skips the release while a
    /// frame is queued or half-read.
    private func serviceIdle(_ state: amqp_connection_state_t) throws(AMQPError) {
        amqp_maybe_release_buffers(state)
        guard !isConsuming else { return }
        while true {
            var frame = amqp_frame_t()
            var now = timeval(tv_sec: 0, tv_usec: 0)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &now)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return }
            guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "checking the idle connection") }
            // A late confirm or return of an abandoned publish, a connection.blocked: nothing to do.
            guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { continue }
            try handleUnexpectedMethod(frame, state: state)
        }
    }

    // MARK: Heartbeats between calls

    /// rabbitmq-c sends and checks heartbeats only inside its calls, so a connection
    /// nobody calls for twice the heartbeat — a publisher with nothing to publish, a
    /// consumer whose handler works on a long batch — is closed by the broker as dead
    /// ("missed heartbeats from client"), and its unacknowledged deliveries go to another
    /// consumer. Every half heartbeat (the negotiated one; none when it is 0) the
    /// connection's own thread runs `keepAliveTick` between the callers' calls.
    private func startKeepAlive(heartbeat: Int) {
        keepAlive?.cancel()
        guard heartbeat > 0 else { return }
        let interval = Duration.milliseconds(heartbeat * 500)
        keepAlive = Task { [weak self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                guard let connection = self, await connection.keepAliveTick() else { return }
            }
        }
    }

    /// Handles what an idle connection received (`serviceIdle`; not on a consuming one, whose
    /// waiting deliveries are `nextDelivery`'s to read), then sends a heartbeat — every tick,
    /// not only when rabbitmq-c deems one due (a full heartbeat after the last frame sent):
    /// ticks can be late on a loaded machine, and the broker gives up after about two. A
    /// connection found dead, or whose channel the broker closed meanwhile, is dropped, so
    /// the caller's next `isAlive()` says to connect again; returns false once there is no
    /// connection to keep.
    func keepAliveTick() -> Bool {
        guard let state else { return false }
        do {
            if !isConsuming { try serviceIdle(state) }
            var heartbeat = amqp_frame_t()
            heartbeat.frame_type = UInt8(AMQP_FRAME_HEARTBEAT)
            heartbeat.channel = 0
            let status = amqp_send_frame(state, &heartbeat)
            guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "sending a heartbeat") }
            return true
        } catch {
            logger.info("amqp connection lost while idle", metadata: ["amqp.target": "\(configuration)", "error": "\(error)"])
            // A channel closed by the broker leaves the connection open but not usable as
            // its owner opened it.
            close()
            return false
        }
    }

    // MARK: Consuming

    /// Sets the prefetch (unacked deliveries in flight) of `channel`.
    public func setPrefetch(_ count: UInt16, channel: UInt16 = 1) throws(AMQPError) {
        let state = try live()
        _ = amqp_basic_qos(state, channel, 0, count, 0)
        try check(state, channel: channel, "basic.qos")
    }

    /// Starts consuming `queue` with manual acknowledgements; returns the consumer tag.
    @discardableResult
    public func consume(_ queue: String, channel: UInt16 = 1, consumerTag: String = "") throws(AMQPError) -> String {
        let state = try live()
        let storage = AMQPTableBuilder()
        let ok = amqp_basic_consume(
            state, channel, storage.bytes(queue), storage.bytes(consumerTag), 0, 0, 0, amqp_empty_table)
        try check(state, channel: channel, "basic.consume \(queue)")
        isConsuming = true
        return ok?.pointee.consumer_tag.string ?? consumerTag
    }

    /// Stops the consumer `consumerTag` and waits for the broker's answer, which comes after
    /// the channel has handled every ack sent before it: a consumer that acked work it must
    /// not see again ends this way before closing.
    public func cancel(consumerTag: String, channel: UInt16 = 1) throws(AMQPError) {
        let state = try live()
        let storage = AMQPTableBuilder()
        _ = amqp_basic_cancel(state, channel, storage.bytes(consumerTag))
        try check(state, channel: channel, "basic.cancel \(consumerTag)")
    }

    /// The next delivery on any consuming channel, or nil when none arrives within `timeout`.
    public func nextDelivery(timeout: Duration) throws(AMQPError) -> Delivery? {
        let state = try live()
        amqp_maybe_release_buffers(state)
        var envelope = amqp_envelope_t()
        var wait = timeval(timeout)
        let reply = amqp_consume_message(state, &envelope, &wait, 0)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            defer { amqp_destroy_envelope(&envelope) }
            return Delivery(
                channel: envelope.channel, deliveryTag: envelope.delivery_tag, redelivered: envelope.redelivered != 0,
                exchange: envelope.exchange.string, routingKey: envelope.routing_key.string,
                properties: envelope.message.properties.tallyProperties, body: envelope.message.body.array)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_TIMEOUT.rawValue:
            return nil
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue:
            // A method frame (channel.close, basic.cancel, …) is waiting instead of a delivery.
            var frame = amqp_frame_t()
            let status = amqp_simple_wait_frame(state, &frame)
            guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "reading a frame") }
            if frame.frame_type == UInt8(AMQP_FRAME_METHOD) { try handleUnexpectedMethod(frame, state: state) }
            return nil
        default:
            throw error(from: reply, "basic.consume")
        }
    }

    /// Acknowledges `deliveryTag` (and every earlier one on the channel with `multiple`).
    public func ack(_ deliveryTag: UInt64, multiple: Bool = false, channel: UInt16 = 1) throws(AMQPError) {
        let state = try live()
        let status = amqp_basic_ack(state, channel, deliveryTag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "basic.ack") }
    }

    /// Negatively acknowledges; without `requeue` the message is dead-lettered (or dropped).
    public func nack(_ deliveryTag: UInt64, multiple: Bool = false, requeue: Bool, channel: UInt16 = 1)
        throws(AMQPError)
    {
        let state = try live()
        let status = amqp_basic_nack(state, channel, deliveryTag, multiple ? 1 : 0, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "basic.nack") }
    }

    /// Rejects one delivery; without `requeue` it is dead-lettered (or dropped).
    public func reject(_ deliveryTag: UInt64, requeue: Bool, channel: UInt16 = 1) throws(AMQPError) {
        let state = try live()
        let status = amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(status, "basic.reject") }
    }

    // MARK: Connection state

    /// Where successive connections of this process start in a multi-node `AMQP_URL`.
    private static let rotation = Atomic<Int>(0)

    /// Connects to the first endpoint that answers, starting from the next in turn (every
    /// node once); the error of a connection that found none names each node's failure.
    private func open() throws(AMQPError) {
        OpenSSLAtExit.keepUntilProcessExit()
        let endpoints = configuration.endpoints
        let start = endpoints.count == 1 ? 0 : Self.rotation.add(1, ordering: .relaxed).oldValue
        var failures: [(AMQPConfiguration.Endpoint, AMQPError)] = []
        for offset in endpoints.indices {
            let endpoint = endpoints[(start + offset) % endpoints.count]
            guard let state = amqp_new_connection() else {
                throw AMQPError(.connectionFailed, message: "out of memory")
            }
            do {
                try openSocket(state, to: endpoint)
                try login(state, at: endpoint)
                self.state = state
                self.endpoint = endpoint
                startKeepAlive(heartbeat: Int(amqp_get_heartbeat(state)))
                logger.debug("amqp connected", metadata: ["amqp.target": "\(configuration)", "amqp.node": "\(endpoint)"])
                if !failures.isEmpty {
                    logger.info(
                        "amqp connected to another node", metadata: ["amqp.node": "\(endpoint)", "amqp.unreachable": "\(failures.map { "\($0.0)" })"])
                }
                return
            } catch {
                _ = amqp_destroy_connection(state)
                guard error.code == .connectionFailed else { throw error }
                failures.append((endpoint, error))
            }
        }
        guard failures.count > 1, let last = failures.last?.1 else { throw failures[0].1 }
        throw AMQPError(
            .connectionFailed,
            message: "no broker of \(configuration) answered: " + failures.map { "\($0.0): \($0.1.message)" }.joined(separator: "; "),
            replyCode: last.replyCode)
    }

    private func openSocket(_ state: amqp_connection_state_t, to endpoint: AMQPConfiguration.Endpoint) throws(AMQPError) {
        let socket: OpaquePointer?
        if configuration.useTLS {
            socket = amqp_ssl_socket_new(state)
            if let socket {
                amqp_ssl_socket_set_verify_peer(socket, 1)
                amqp_ssl_socket_set_verify_hostname(socket, 1)
                if let path = configuration.caCertificatePath, amqp_ssl_socket_set_cacert(socket, path) != 0 {
                    throw AMQPError(.configuration, message: "cannot read the CA file \(path)")
                }
            }
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else { throw AMQPError(.connectionFailed, message: "cannot create a socket") }
        var wait = timeval(configuration.connectionTimeout)
        let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &wait)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError(
                .connectionFailed,
                message: "cannot reach \(endpoint): \(String(cString: amqp_error_string2(status)))")
        }
    }

    private func login(_ state: amqp_connection_state_t, at endpoint: AMQPConfiguration.Endpoint) throws(AMQPError) {
        let storage = AMQPTableBuilder()
        let capabilities = storage.table([
            ("consumer_cancel_notify", storage.field(.bool(true))),
            ("connection.blocked", storage.field(.bool(true))),
        ])
        var properties = storage.table([
            ("connection_name", storage.field(.string(configuration.connectionName))),
            ("product", storage.field(.string("Tally"))),
            ("capabilities", storage.nested(capabilities)),
        ])
        let reply = tally_amqp_login_plain(
            state, configuration.vhost, Int32(configuration.channelMax), Int32(configuration.frameMax),
            Int32(configuration.heartbeat), &properties, configuration.user, configuration.password)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            let reason = error(from: reply, "login", closeOnServerError: false)
            throw AMQPError(.connectionFailed, message: "login to \(endpoint) failed: \(reason.message)", replyCode: reason.replyCode)
        }
    }

    private func live() throws(AMQPError) -> amqp_connection_state_t {
        guard let state else { throw AMQPError(.connectionLost, message: "the connection is closed; connect again") }
        return state
    }

    private func check(_ state: amqp_connection_state_t, channel: UInt16, _ operation: String) throws(AMQPError) {
        let reply = amqp_get_rpc_reply(state)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else { throw error(from: reply, operation) }
    }

    /// Turns a failed RPC into an `AMQPError`, answering the broker's close and
    /// forgetting a dead connection so the next call says "connect again".
    private func error(from reply: amqp_rpc_reply_t, _ operation: String, closeOnServerError: Bool = true) -> AMQPError {
        switch reply.reply_type {
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return fail(reply.library_error, operation)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            return serverClose(method: reply.reply.id, decoded: reply.reply.decoded, channel: nil)
        default:
            return AMQPError(.unexpected, message: "\(operation): no reply")
        }
    }

    private func handleUnexpectedMethod(_ frame: amqp_frame_t, state: amqp_connection_state_t) throws(AMQPError) {
        switch frame.payload.method.id {
        case AMQP_CHANNEL_CLOSE_METHOD, AMQP_CONNECTION_CLOSE_METHOD:
            throw serverClose(method: frame.payload.method.id, decoded: frame.payload.method.decoded, channel: frame.channel)
        case AMQP_BASIC_CANCEL_METHOD:
            throw AMQPError(.channelClosed, message: "the broker cancelled the consumer (queue deleted?)")
        default:
            logger.debug("amqp frame ignored", metadata: ["amqp.method": "\(frame.payload.method.id)"])
        }
    }

    private func serverClose(method: amqp_method_number_t, decoded: UnsafeMutableRawPointer?, channel: UInt16?)
        -> AMQPError
    {
        guard let state, let decoded else { return AMQPError(.unexpected, message: "server exception without detail") }
        // The decoded method lives in the connection's frame memory: copy its text out
        // before answering (which may reuse that memory) or destroying the connection.
        if method == AMQP_CONNECTION_CLOSE_METHOD {
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let error = AMQPError(.connectionClosed, message: close.reply_text.string, replyCode: close.reply_code)
            _ = tally_amqp_send_connection_close_ok(state)
            dropConnection()
            return error
        }
        let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
        let error = AMQPError(.channelClosed, message: close.reply_text.string, replyCode: close.reply_code)
        let closedChannel = channel ?? openChannels.first ?? 1
        _ = tally_amqp_send_channel_close_ok(state, closedChannel)
        openChannels.remove(closedChannel)
        nextPublishSequence[closedChannel] = nil
        return error
    }

    /// A library status that is not OK: socket-level failures kill the connection.
    private func fail(_ status: Int32, _ operation: String) -> AMQPError {
        let text = String(cString: amqp_error_string2(status))
        dropConnection()
        return AMQPError(.connectionLost, message: "\(operation): \(text)")
    }

    private func dropConnection() {
        guard let state else { return }
        _ = amqp_destroy_connection(state)
        self.state = nil
        openChannels.removeAll()
        nextPublishSequence.removeAll()
        isConsuming = false
    }
}

/// Outcomes of one `publish` batch, settled as acks, nacks and returns arrive.
struct PendingConfirms {
    let first: UInt64
    var outcomes: [PublishOutcome?]
    var returned: [PublishOutcome?]
    var messageIDs: [String: [Int]] = [:]

    init(first: UInt64, count: Int) {
        self.first = first
        self.outcomes = Array(repeating: nil, count: count)
        self.returned = Array(repeating: nil, count: count)
    }

    var isComplete: Bool { !outcomes.contains(where: { $0 == nil }) }
    var unconfirmedCount: Int { outcomes.filter { $0 == nil }.count }

    mutating func settle(upTo tag: UInt64, multiple: Bool, as outcome: PublishOutcome) {
        let last = Int(tag) - Int(first)
        let firstIndex = multiple ? 0 : last
        guard last >= 0, last < outcomes.count else { return }
        for index in firstIndex...last where outcomes[index] == nil {
            outcomes[index] = returned[index] ?? outcome
        }
    }

    /// Marks the earliest unsettled publish with `messageID` (or, without one, the
    /// earliest unsettled mandatory publish) as returned.
    mutating func markReturned(messageID: String?, as outcome: PublishOutcome) {
        let candidates = messageID.flatMap { messageIDs[$0] } ?? Array(outcomes.indices)
        if let index = candidates.first(where: { outcomes[$0] == nil && returned[$0] == nil }) {
            returned[index] = outcome
        }
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(max(0, seconds)), tv_usec: Int(max(0, attoseconds / 1_000_000_000_000)))
    }
}
