/// Why the spool could not do what was asked, and what to do about it.
public struct SpoolError: Error, CustomStringConvertible, Equatable {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable { case full, io, corrupt }
        let base: Base

        /// The batch would exceed the size limit: nothing was appended (back-pressure).
        public static let full = Code(base: .full)
        /// A file operation failed (disk full, permissions).
        public static let io = Code(base: .io)
        /// A record before the last segment's tail is damaged: data would be lost by skipping it.
        public static let corrupt = Code(base: .corrupt)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "SpoolError(\(code)): \(message)" }
}
