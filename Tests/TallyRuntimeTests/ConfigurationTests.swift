import TallyRuntime
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    let required = ConfigurationKey("TEST_URL", summary: "a required URL", isSecret: true)
    let port = ConfigurationKey("TEST_PORT", summary: "a port", default: "8081")
    let optional = ConfigurationKey("TEST_FEATURE", summary: "an optional feature", isOptional: true)

    @Test("values come from the environment, then the default")
    func precedence() throws {
        #expect(try ConfigurationReader(environment: [:]).int(port, in: 1...65535) == 8081)
        #expect(try ConfigurationReader(environment: ["TEST_PORT": "9000"]).int(port, in: 1...65535) == 9000)
        #expect(try ConfigurationReader(environment: ["TEST_PORT": ""]).int(port, in: 1...65535) == 8081)
        #expect(ConfigurationReader(environment: [:]).optionalString(optional) == nil)
    }

    @Test("a missing required key names the variable and what to do")
    func missing() {
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationReader(environment: [:]).string(required) }
        #expect(error?.key == "TEST_URL")
        #expect(error?.description.contains(".local/env") == true)
        #expect(throws: ConfigurationError.self) {
            try ConfigurationReport.validate([required, port, optional], reader: ConfigurationReader(environment: [:]))
        }
    }

    @Test("malformed values are refused with the allowed range or choices")
    func malformed() {
        let reader = ConfigurationReader(environment: ["TEST_PORT": "eighty", "LOG_LEVEL": "loud"])
        let portError = #expect(throws: ConfigurationError.self) { try reader.int(port, in: 1...65535) }
        #expect(portError?.description == "TEST_PORT is invalid: expected a whole number in 1...65535")
        let levelError = #expect(throws: ConfigurationError.self) {
            try reader.choice(.logLevel, among: ["info", "debug"])
        }
        #expect(levelError?.key == "LOG_LEVEL")
    }

    @Test("a token shorter than 32 characters is refused without printing it")
    func shortToken() throws {
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationReader(environment: ["TEST_URL": "CHANGE-ME"]).token(required) }
        #expect(error?.description == "TEST_URL is invalid: is 9 characters; a token is at least 32 (generate one: openssl rand -hex 32)")
        let long = String(repeating: "a1", count: 16)
        #expect(try ConfigurationReader(environment: ["TEST_URL": long]).token(required) == long)
    }

    @Test("secrets are never printed, only whether they are set")
    func redaction() {
        let reader = ConfigurationReader(environment: ["TEST_URL": "postgresql://u:hunter2@db/x"])
        let report = ConfigurationReport.render([required, port, optional], reader: reader)
        #expect(!report.contains("hunter2"))
        #expect(report.contains("TEST_URL     = (set, 27 characters)"))
        #expect(report.contains("TEST_PORT    = 8081 (default)"))
        #expect(report.contains("TEST_FEATURE = (unset)"))
    }

    @Test("help lists every key with its default or requirement")
    func help() {
        let text = ConfigurationReport.helpText([required, port, optional])
        #expect(text.contains("TEST_URL (required)"))
        #expect(text.contains("TEST_PORT (default: 8081)"))
        #expect(text.contains("TEST_FEATURE (optional)"))
    }
}

@Suite("Allocator tuning")
struct AllocatorTuningTests {
    @Test("a worker sets two arenas and a 1 MiB mmap threshold, except what the operator set")
    func operatorWins() {
        #expect(AllocatorTuning.settings(environment: [:]) == [.arenaMax: 2, .mmapThreshold: 1_048_576])
        #expect(AllocatorTuning.settings(environment: ["MALLOC_ARENA_MAX": "4"]) == [.mmapThreshold: 1_048_576])
        #expect(AllocatorTuning.settings(environment: ["MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"]).isEmpty)
        #expect(AllocatorTuning.settings(environment: ["GLIBC_TUNABLES": "glibc.malloc.arena_max=4"]).isEmpty)
        #expect(AllocatorTuning.settings(environment: ["GLIBC_TUNABLES": "glibc.pthread.rseq=0"]).count == 2)
    }

    @Test("glibc takes both settings")
    func glibcAccepts() {
        #expect(AllocatorTuning.apply(environment: [:]).isEmpty)
    }
}

@Suite("Terminal text")
struct TerminalTextTests {
    @Test("control characters in outside text are escaped before an operator's terminal sees them; newlines, tabs and letters pass")
    func escaping() {
        #expect(TerminalText.safe("evt-\u{1B}[31mred\u{1B}[0m") == "evt-\\u{1B}[31mred\\u{1B}[0m")
        #expect(TerminalText.safe("bell\u{7}, del\u{7F}, csi\u{9B}") == "bell\\u{7}, del\\u{7F}, csi\\u{9B}")
        #expect(TerminalText.safe("café\tline\nnext") == "café\tline\nnext")
    }
}
