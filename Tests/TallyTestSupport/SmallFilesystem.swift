import Foundation

/// A tmpfs of a few kilobytes mounted on a fresh folder, so a test can fill a real disk
/// (ENOSPC part-way through a write) and then give it room again. Mounting needs root
/// (CAP_SYS_ADMIN); tests using it are enabled only when `isPermitted`.
public struct SmallFilesystem: Sendable {
    /// The mount point (a fresh folder under the temporary directory).
    public let path: String

    /// Whether this process may mount a tmpfs (tried once, on a throwaway folder).
    public static let isPermitted: Bool = {
        guard let probe = try? SmallFilesystem(bytes: 16 << 10) else { return false }
        probe.unmount()
        return true
    }()

    /// Mounts a tmpfs of `bytes` bytes (rounded up to whole pages by the kernel).
    public init(bytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-small-fs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let (status, _, errors) = try TestEnvironment.runBlocking("/bin/mount", ["-t", "tmpfs", "-o", "size=\(bytes)", "tmpfs", path])
        guard status == 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw SmallFilesystemError(message: "mount -t tmpfs on \(path) failed (\(status)): \(errors); run the tests as root")
        }
    }

    /// Changes the size limit in place; the files stay.
    public func resize(bytes: Int) throws {
        let (status, _, errors) = try TestEnvironment.runBlocking("/bin/mount", ["-o", "remount,size=\(bytes)", path])
        guard status == 0 else { throw SmallFilesystemError(message: "remount of \(path) failed (\(status)): \(errors)") }
    }

    /// Unmounts (dropping every file on it) and removes the mount point.
    public func unmount() {
        // Lazily: a file the test still holds open (a failed expectation skipped its close) must not keep it mounted.
        _ = try? TestEnvironment.runBlocking("/bin/umount", ["-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Mounting or resizing the test filesystem failed.
public struct SmallFilesystemError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
