import Foundation
import Hummingbird
import NIOCore
import TallyHTTP
import TallyStore

/// The ingest service's request context: bodies up to 8 MiB (SPEC §4), the
/// authenticated principal, Tally's JSON output.
struct IngestRequestContext: AuthenticatedRequestContext {
    var coreContext: CoreRequestContextStorage
    var principal: Principal?
    /// The connection, to close it after a refusal whose body was not read to the end.
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.principal = nil
        self.channel = source.channel
    }

    static let bodyLimit = 8 << 20
    /// How much of an oversized body is read (and discarded) so the client, which may
    /// send its whole body before reading an answer, gets the 413; past it the
    /// connection is closed instead.
    static let drainLimit = 64 << 20
    var maxUploadSize: Int { Self.bodyLimit }
    var responseEncoder: JSONEncoder { .tally }
}
