import Foundation

/// Reads typed settings from the environment. Every read names a `ConfigurationKey`,
/// so an error always says which variable is wrong and what to do about it.
public struct ConfigurationReader: Sendable {
    private let environment: [String: String]

    /// Reads from `environment`, by default the process environment.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// The raw value of `key`, or its default; nil when neither is set.
    public func optionalString(_ key: ConfigurationKey) -> String? {
        if let value = environment[key.name], !value.isEmpty { return value }
        return key.defaultValue
    }

    /// The value of `key`, or its default; throws when neither is set.
    public func string(_ key: ConfigurationKey) throws(ConfigurationError) -> String {
        guard let value = optionalString(key) else { throw .missing(key) }
        return value
    }

    /// A secret that guards access (a bearer token): at least `minimumLength` characters,
    /// so guessing it is out of reach ("CHANGE-ME" from an example file is refused).
    public func token(_ key: ConfigurationKey, minimumLength: Int = 32) throws(ConfigurationError) -> String {
        let value = try string(key)
        guard value.count >= minimumLength else {
            throw .invalid(
                key, reason: "is \(value.count) characters; a token is at least \(minimumLength) (generate one: openssl rand -hex 32)")
        }
        return value
    }

    /// The value of `key` as an integer within `range`.
    public func int(_ key: ConfigurationKey, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        let text = try string(key)
        guard let value = Int(text), range.contains(value) else {
            throw .invalid(key, reason: "expected a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// The value of `key`, which must be one of `choices`.
    public func choice(_ key: ConfigurationKey, among choices: [String]) throws(ConfigurationError) -> String {
        let text = try string(key)
        guard choices.contains(text) else {
            throw .invalid(key, reason: "expected one of \(choices.joined(separator: ", "))")
        }
        return text
    }

    /// What `keys` resolve to, for `config` commands: secrets are shown as set or unset, never by value.
    public func describe(_ keys: [ConfigurationKey]) -> [(key: ConfigurationKey, shown: String)] {
        keys.map { key in
            guard let value = optionalString(key) else { return (key, "(unset)") }
            if key.isSecret { return (key, "(set, \(value.count) characters)") }
            let isDefault = environment[key.name]?.isEmpty ?? true
            return (key, isDefault ? "\(value) (default)" : value)
        }
    }
}

/// A setting that is missing or malformed, named so the operator can fix it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let reason: String

    static func missing(_ key: ConfigurationKey) -> ConfigurationError {
        ConfigurationError(
            key: key.name,
            reason: "is not set (\(key.summary)); export it, or run ./ops/local.sh up and `set -a; . .local/env`")
    }

    public static func invalid(_ key: ConfigurationKey, reason: String) -> ConfigurationError {
        ConfigurationError(key: key.name, reason: "is invalid: \(reason)")
    }

    public var description: String { "\(key) \(reason)" }
}
