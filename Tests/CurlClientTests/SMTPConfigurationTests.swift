import CurlClient
import Testing

@Suite("SMTP_URL parsing")
struct SMTPConfigurationTests {
    @Test("a local sink URL: host and port, no credentials, STARTTLS only if offered")
    func localSink() throws {
        let configuration = try SMTPConfiguration(url: "smtp://127.0.0.1:35025")
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 35025)
        #expect(configuration.username == nil)
        #expect(configuration.password == nil)
        #expect(configuration.security == .startTLSIfOffered)
    }

    @Test("credentials are percent-decoded, require STARTTLS by default, and stay out of the description")
    func credentials() throws {
        let configuration = try SMTPConfiguration(url: "smtp://mailer%40tally.example:s3cr%3At@mail.example.com:587")
        #expect(configuration.username == "mailer@tally.example")
        #expect(configuration.password == "s3cr:t")
        #expect(configuration.host == "mail.example.com")
        #expect(configuration.port == 587)
        #expect(configuration.security == .startTLS)
        #expect(!configuration.description.contains("s3cr"))
        #expect(configuration.description.contains("mail.example.com:587"))
    }

    @Test("smtps means TLS from the start, on port 465 unless given")
    func implicitTLS() throws {
        let configuration = try SMTPConfiguration(url: "smtps://user:pass@mail.example.com")
        #expect(configuration.port == 465)
        #expect(configuration.security == .implicitTLS)
    }

    @Test(
        "the starttls parameter chooses the upgrade policy",
        arguments: [
            ("required", SMTPConfiguration.Security.startTLS),
            ("optional", .startTLSIfOffered),
            ("never", .plaintext),
        ])
    func startTLSParameter(_ value: String, _ expected: SMTPConfiguration.Security) throws {
        #expect(try SMTPConfiguration(url: "smtp://user:pass@mail.example.com?starttls=\(value)").security == expected)
    }

    @Test(
        "unusable URLs are refused",
        arguments: [
            "http://mail.example.com", "smtp://", "smtps://mail.example.com?starttls=required",
            "smtp://mail.example.com?starttls=maybe", "not a url",
        ])
    func invalid(_ url: String) {
        let error = #expect(throws: CurlError.self) { try SMTPConfiguration(url: url) }
        #expect(error?.code == .invalidRequest)
    }
}
