import Foundation
import RabbitMQClient

extension Topology {
    /// The topology as RabbitMQ definitions JSON (`rabbitmqctl import_definitions`)
    /// for vhost `vhost`, with keys sorted so the committed file diffs cleanly.
    public func definitionsJSON(vhost: String = "/") throws -> String {
        let document = Definitions(
            exchanges: exchanges.map {
                .init(
                    name: $0.name, vhost: vhost, type: $0.type.rawValue, durable: true, auto_delete: false,
                    internal: false, arguments: [:])
            },
            queues: queues.map {
                .init(
                    name: $0.name, vhost: vhost, durable: true, auto_delete: false,
                    arguments: $0.arguments.mapValues(JSONValue.init))
            },
            bindings: bindings.map {
                .init(
                    source: $0.exchange, vhost: vhost, destination: $0.queue, destination_type: "queue",
                    routing_key: $0.routingKey, arguments: [:])
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(document), as: UTF8.self) + "\n"
    }
}

// Field names follow RabbitMQ's definitions format exactly.
private struct Definitions: Encodable {
    struct ExchangeDefinition: Encodable {
        let name, vhost, type: String
        let durable, auto_delete, `internal`: Bool
        let arguments: [String: JSONValue]
    }
    struct QueueDefinition: Encodable {
        let name, vhost: String
        let durable, auto_delete: Bool
        let arguments: [String: JSONValue]
    }
    struct BindingDefinition: Encodable {
        let source, vhost, destination, destination_type, routing_key: String
        let arguments: [String: JSONValue]
    }
    let exchanges: [ExchangeDefinition]
    let queues: [QueueDefinition]
    let bindings: [BindingDefinition]
}

private enum JSONValue: Encodable {
    case string(String)
    case int(Int64)
    case bool(Bool)

    init(_ value: AMQPFieldValue) {
        switch value {
        case .string(let text): self = .string(text)
        case .int(let number): self = .int(number)
        case .bool(let flag): self = .bool(flag)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .int(let number): try container.encode(number)
        case .bool(let flag): try container.encode(flag)
        }
    }
}
