import Foundation
import Hummingbird
import TallyHTTP
import TallyStore

/// The ingest service's request context: bodies up to 8 MiB (SPEC §4), the
/// authenticated principal, Tally's JSON output.
struct IngestRequestContext: AuthenticatedRequestContext {
    var coreContext: CoreRequestContextStorage
    var principal: Principal?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.principal = nil
    }

    static let bodyLimit = 8 << 20
    var maxUploadSize: Int { Self.bodyLimit }
    var responseEncoder: JSONEncoder { .tally }
}
