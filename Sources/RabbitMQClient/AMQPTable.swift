import CRabbitMQ
import Foundation

/// Builds `amqp_table_t` values whose memory lives as long as this object, and
/// reads tables handed back by the library.
///
/// rabbitmq-c keeps the pointers it is given (it does not copy), so every string
/// is duplicated into memory owned here and freed in `deinit`.
final class AMQPTableBuilder {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        allocations.forEach { free($0) }
    }

    /// Bytes that stay valid until this builder is released.
    func bytes(_ text: String) -> amqp_bytes_t {
        bytes(Array(text.utf8))
    }

    func bytes(_ data: [UInt8]) -> amqp_bytes_t {
        guard !data.isEmpty, let memory = malloc(data.count) else { return amqp_empty_bytes }
        allocations.append(memory)
        data.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: data.count) }
        return amqp_bytes_t(len: data.count, bytes: memory)
    }

    func table(_ values: [String: AMQPFieldValue]) -> amqp_table_t {
        table(values.sorted { $0.key < $1.key }.map { ($0.key, field($0.value)) })
    }

    func table(_ entries: [(String, amqp_field_value_t)]) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_empty_table }
        let memory = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: entries.count)
        allocations.append(UnsafeMutableRawPointer(memory))
        for (index, entry) in entries.enumerated() {
            (memory + index).initialize(to: amqp_table_entry_t(key: bytes(entry.0), value: entry.1))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: memory)
    }

    func field(_ value: AMQPFieldValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .string(let text):
            field.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
            field.value.bytes = bytes(text)
        case .int(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
            field.value.i64 = number
        case .bool(let flag):
            field.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
            field.value.boolean = flag ? 1 : 0
        }
        return field
    }

    func nested(_ table: amqp_table_t) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        field.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
        field.value.table = table
        return field
    }
}

extension amqp_bytes_t {
    /// The bytes as a Swift string (UTF-8, lossy).
    var string: String {
        guard len > 0, let bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: len), as: UTF8.self)
    }

    var array: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }
}

extension amqp_table_t {
    /// Entries of the kinds Tally uses; others (arrays, nested tables, floats) are skipped.
    var values: [String: AMQPFieldValue] {
        var values: [String: AMQPFieldValue] = [:]
        for index in 0..<Int(num_entries) {
            let entry = entries[index]
            let value = entry.value
            switch Int(value.kind) {
            case Int(AMQP_FIELD_KIND_UTF8.rawValue), Int(AMQP_FIELD_KIND_BYTES.rawValue):
                values[entry.key.string] = .string(value.value.bytes.string)
            case Int(AMQP_FIELD_KIND_I64.rawValue): values[entry.key.string] = .int(value.value.i64)
            case Int(AMQP_FIELD_KIND_U64.rawValue): values[entry.key.string] = .int(Int64(truncatingIfNeeded: value.value.u64))
            case Int(AMQP_FIELD_KIND_I32.rawValue): values[entry.key.string] = .int(Int64(value.value.i32))
            case Int(AMQP_FIELD_KIND_U32.rawValue): values[entry.key.string] = .int(Int64(value.value.u32))
            case Int(AMQP_FIELD_KIND_I16.rawValue): values[entry.key.string] = .int(Int64(value.value.i16))
            case Int(AMQP_FIELD_KIND_U16.rawValue): values[entry.key.string] = .int(Int64(value.value.u16))
            case Int(AMQP_FIELD_KIND_I8.rawValue): values[entry.key.string] = .int(Int64(value.value.i8))
            case Int(AMQP_FIELD_KIND_U8.rawValue): values[entry.key.string] = .int(Int64(value.value.u8))
            case Int(AMQP_FIELD_KIND_BOOLEAN.rawValue): values[entry.key.string] = .bool(value.value.boolean != 0)
            default: continue
            }
        }
        return values
    }
}

extension amqp_basic_properties_t {
    /// Reads the properties Tally uses out of a received message header.
    var tallyProperties: AMQPProperties {
        func has(_ flag: Int32) -> Bool { _flags & amqp_flags_t(flag) != 0 }
        return AMQPProperties(
            contentType: has(AMQP_BASIC_CONTENT_TYPE_FLAG) ? content_type.string : nil,
            messageID: has(AMQP_BASIC_MESSAGE_ID_FLAG) ? message_id.string : nil,
            correlationID: has(AMQP_BASIC_CORRELATION_ID_FLAG) ? correlation_id.string : nil,
            persistent: has(AMQP_BASIC_DELIVERY_MODE_FLAG) && delivery_mode == 2,
            timestamp: has(AMQP_BASIC_TIMESTAMP_FLAG) ? Int64(timestamp) : nil,
            headers: has(AMQP_BASIC_HEADERS_FLAG) ? headers.values : [:],
            expiration: has(AMQP_BASIC_EXPIRATION_FLAG) ? expiration.string : nil)
    }
}

extension AMQPTableBuilder {
    /// The C properties for `properties`, valid while this builder lives.
    func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: Int32 = AMQP_BASIC_DELIVERY_MODE_FLAG
        c.delivery_mode = properties.persistent ? 2 : 1
        if let contentType = properties.contentType {
            c.content_type = bytes(contentType)
            flags |= AMQP_BASIC_CONTENT_TYPE_FLAG
        }
        if let messageID = properties.messageID {
            c.message_id = bytes(messageID)
            flags |= AMQP_BASIC_MESSAGE_ID_FLAG
        }
        if let correlationID = properties.correlationID {
            c.correlation_id = bytes(correlationID)
            flags |= AMQP_BASIC_CORRELATION_ID_FLAG
        }
        if let timestamp = properties.timestamp {
            c.timestamp = UInt64(max(0, timestamp))
            flags |= AMQP_BASIC_TIMESTAMP_FLAG
        }
        if let expiration = properties.expiration {
            c.expiration = bytes(expiration)
            flags |= AMQP_BASIC_EXPIRATION_FLAG
        }
        if !properties.headers.isEmpty {
            c.headers = table(properties.headers)
            flags |= AMQP_BASIC_HEADERS_FLAG
        }
        c._flags = amqp_flags_t(flags)
        return c
    }
}
