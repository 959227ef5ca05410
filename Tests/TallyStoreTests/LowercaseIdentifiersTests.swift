import Foundation
import Logging
import TallyStore
import Testing

@Suite("One spelling of ids: lower case in JSON, strings and log metadata")
struct LowercaseIdentifiersTests {
    struct Record: Encodable {
        let id: UUID
        let parent: UUID?
        let missing: UUID?
        let children: [UUID]
    }

    @Test("a Codable type, an interpolated string and a log metadata value write ids in lower case")
    func lowerCase() throws {
        let id = UUID()
        let json = String(decoding: try JSONEncoder().encode(Record(id: id, parent: id, missing: nil, children: [id, id])), as: UTF8.self)
        #expect(json.components(separatedBy: id.uuidString.lowercased()).count == 5)
        #expect(!json.contains(id.uuidString))
        #expect(!json.contains("missing"))
        #expect("tenant \(id)" == "tenant " + id.uuidString.lowercased())
        let metadata: Logger.Metadata = ["tenant.id": "\(id)"]
        #expect(metadata["tenant.id"]?.description == id.uuidString.lowercased())
    }
}
