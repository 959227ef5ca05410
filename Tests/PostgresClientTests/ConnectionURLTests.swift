import ConnectionURLs
import Testing

/// The one reading of `DATABASE_URL`, `AMQP_URL` and `SMTP_URL`; each client's own tests
/// check what it makes of the parts.
@Suite("Connection URLs")
struct ConnectionURLTests {
    @Test("credentials and path are percent-decoded, the scheme compared in lower case, query items kept in order")
    func parts() throws {
        let url = try #require(ConnectionURL("PostgreSQL://us%40er:p%3Ass@db.example:6543//my%20db?sslmode=require&x", schemes: ["postgresql"]))
        #expect(url.scheme == "postgresql")
        #expect(url.host == "db.example")
        #expect(url.port == 6543)
        #expect(url.user == "us@er")
        #expect(url.password == "p:ss")
        #expect(url.encodedPath == "//my%20db")
        #expect(url.pathName == "my db")
        #expect(url.query == [.init(name: "sslmode", value: "require"), .init(name: "x", value: nil)])
        #expect(url.value(of: "sslmode") == "require")
        #expect(url.value(of: "x") == nil)
    }

    @Test("absent parts are nil; another scheme or no URL at all is refused")
    func absentAndRefused() throws {
        let bare = try #require(ConnectionURL("amqp://", schemes: ["amqp", "amqps"]))
        #expect(bare.host == nil && bare.port == nil && bare.user == nil && bare.password == nil)
        #expect(bare.encodedPath == "" && bare.pathName == "" && bare.query.isEmpty && !bare.hasQuery)
        #expect(ConnectionURL("amqp://mq-2:5672?", schemes: ["amqp"])?.hasQuery == true)
        #expect(ConnectionURL("smtp://mail:25", schemes: ["amqp"]) == nil)
        #expect(ConnectionURL("not a url", schemes: ["amqp"]) == nil)
        #expect(ConnectionURL("smtps://127.0.0.1:465", schemes: ["smtp", "smtps"])?.port == 465)
    }
}
