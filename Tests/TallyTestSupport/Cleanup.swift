/// Runs `body`, then `cleanup` whether `body` returned or threw (an `await` cannot go in
/// a `defer`): shared state a test adds — a trigger, a metric, a queue — is removed even
/// when a `try #require` or a failed call ends the test early.
public func withCleanup<T>(
    _ body: () async throws -> T, cleanup: () async throws -> Void
) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        try? await cleanup()
        throw error
    }
    try await cleanup()
    return result
}
