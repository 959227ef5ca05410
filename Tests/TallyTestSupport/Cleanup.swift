/// Runs `body`, then `cleanup` whether `body` returned or threw: the `defer` of a test
/// whose cleanup must await (Swift's `defer` cannot).
public func withCleanup<Result>(
    _ body: () async throws -> Result, cleanup: () async -> Void
) async throws -> Result {
    let result: Result
    do {
        result = try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}
