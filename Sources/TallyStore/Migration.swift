import Crypto
import Foundation

/// One numbered SQL file from `ops/sql/` (`NNN_description.sql`).
///
/// A migration is applied once, in version order, and never edited afterwards:
/// its SHA-256 is recorded, and a file whose content changed after it was applied
/// stops the migrator instead of silently diverging from the database.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String

    /// Hex SHA-256 of the file's SQL.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Every `NNN_name.sql` in `directory`, sorted by version; duplicate versions are an error.
    public static func load(from directory: String) throws(MigrationError) -> [Migration] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw .unreadableDirectory(directory)
        }
        var migrations: [Migration] = []
        for file in files where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else {
                throw .badFileName(file)
            }
            guard let sql = try? String(contentsOfFile: directory + "/" + file, encoding: .utf8) else {
                throw .unreadableFile(file)
            }
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (earlier, later) in zip(migrations, migrations.dropFirst()) where earlier.version == later.version {
            throw .duplicateVersion(later.version)
        }
        return migrations
    }
}

/// Why the schema could not be brought up to date, and what to do about it.
public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case unreadableDirectory(String)
    case unreadableFile(String)
    case badFileName(String)
    case duplicateVersion(Int)
    case checksumMismatch(version: Int, name: String)
    case unknownAppliedVersion(Int)

    public var description: String {
        switch self {
        case .unreadableDirectory(let path):
            "cannot read migrations folder \(path): set TALLY_MIGRATIONS_DIR or pass --dir"
        case .unreadableFile(let file): "cannot read migration \(file) as UTF-8"
        case .badFileName(let file): "migration \(file) is not named NNN_description.sql"
        case .duplicateVersion(let version): "two migrations have version \(version): renumber one"
        case .checksumMismatch(let version, let name):
            "migration \(version)_\(name) changed after it was applied: never edit an applied migration, add a new one"
        case .unknownAppliedVersion(let version):
            "the database has migration \(version) applied but this build has no such file: deploy the newer build"
        }
    }
}
