import ServiceLifecycle
import TallyMessaging

/// Keeps a process's `ConfirmedPublisher` for the life of its `ServiceGroup` and closes
/// it on graceful shutdown. A group shuts its services down in reverse order, one after
/// the other: list this before the services that publish, and it closes after them.
public struct PublisherService: Service {
    let publisher: ConfirmedPublisher

    public init(_ publisher: ConfirmedPublisher) {
        self.publisher = publisher
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await publisher.close()
    }
}
