import Catalog
import Foundation
import Logging
import PostgresClient
import TallyStore
import TallyTestSupport
import Testing
import UsageEvents

/// `invoicer catalog`: a catalog file read exactly (YAML or JSON), refused naming the entry
/// and field, and applied idempotently by the real binary.
@Suite("Invoicer: the pricing catalog from a file")
struct CatalogCommandTests {
    static var binary: String { TestEnvironment.repositoryRoot + "/.build/debug/invoicer" }

    static func yaml(_ run: String, growthBase: Int = 4900) -> String {
        """
        metrics:
          - {code: test_sms_\(run), name: Text messages, unit: message}
        plans:
          - code: test-growth-\(run)
            name: Growth
            currency: EUR
            base_cents: \(growthBase)
            trial_days: 14
            charges:
              - metric: api_calls
                quota: 50000
                model: graduated
                tiers:
                  - {up_to: 1000, unit_price: 0}
                  - {up_to: 10000.5, unit_price: 0.000125, flat_cents: 500}
                  - {up_to: null, unit_price: "0.25"}
              - {metric: test_sms_\(run), model: package, included: 100, size: 1000, price_cents: 2500}
        """
    }

    @Test("YAML numbers keep their written text; a refusal names the entry and the field; YAML and JSON read alike")
    func reading() throws {
        let file = try CatalogFile(text: Self.yaml("x"), yaml: true)
        #expect(file.metrics.map(\.metric.code) == ["test_sms_x"])
        let tiers = try #require(file.plans.first?.version.charges.first?.tiers)
        #expect(tiers.map(\.upTo) == ["1000", "10000.5", nil])
        #expect(tiers.map(\.unitPrice) == ["0", "0.000125", "0.25"])
        #expect(file.plans.first?.version.currency == "eur")
        let bad = Self.yaml("x").replacingOccurrences(of: "{up_to: 10000.5,", with: "{up_to: 999,")
        #expect(throws: CatalogRefusal.self) { try CatalogFile(text: bad, yaml: true) }
        do {
            _ = try CatalogFile(text: bad, yaml: true)
        } catch {
            #expect(error.field == "plans[0].charges[0].tiers[1].up_to")
        }
        let json =
            #"{"plans": [{"code": "j", "name": "J", "currency": "usd", "base_cents": 1, "charges": [{"metric": "users", "model": "standard", "unit_price": 1.5}]}]}"#
        #expect(try CatalogFile(text: json, yaml: false).plans.first?.version.charges.first?.unitPrice == "1.5")
        #expect(try CatalogFile(text: json, yaml: true).plans.first?.version == CatalogFile(text: json, yaml: false).plans.first?.version)
        // Two prices for one charge: refused, naming it, rather than the last one kept.
        do {
            _ = try CatalogFile(
                text: json.replacingOccurrences(of: #""unit_price": 1.5"#, with: #""unit_price": 1.5, "unit_price": 15"#), yaml: false)
            Issue.record("a charge with two unit prices was read")
        } catch {
            #expect(error.field == "file")
            #expect(error.message.hasPrefix(#"the key "unit_price" appears more than once in an object"#), "\(error.message)")
            #expect(error.message.contains(".plans[0].charges[0].unit_price"), "\(error.message)")
        }
        // A misspelt key (in a YAML file too) is refused, not dropped for its default.
        for (text, field) in [
            (
                Self.yaml("x").replacingOccurrences(of: #"unit_price: "0.25""#, with: #"unit_prize: "0.25""#),
                "plans[0].charges[0].tiers[2].unit_prize"
            ),
            ("metric:\n  - code: seats\n", "metric"),
        ] {
            do {
                _ = try CatalogFile(text: text, yaml: true)
                Issue.record("a misspelt key was read: \(field)")
            } catch {
                #expect(error.field == field, "\(error)")
                #expect(error.message.contains("did you mean"), "\(error.message)")
            }
        }
        // An empty file, or empty lists, is not a catalog (it applied as "0 changes").
        for text in ["", "metrics:\nplans:\n", "{}"] {
            do {
                _ = try CatalogFile(text: text, yaml: true)
                Issue.record("an empty catalog was read: \(text.debugDescription)")
            } catch {
                #expect(error.field == "file" && error.message.hasPrefix("holds no metrics and no plans"), "\(error)")
            }
        }
        do {
            _ = try CatalogFile(text: "metrics:\n  - code: seats\n  - code: sms\n  - {code: seats, aggregation: max}\n", yaml: true)
            Issue.record("a metric defined twice was read")
        } catch {
            #expect(error.field == "metrics[2].code" && error.message == "metric seats is defined twice (metrics[0] too)", "\(error)")
        }
        do {
            _ = try CatalogFile(text: "plans:\n  - code: Bad Code\n", yaml: true)
            Issue.record("a bad code was read")
        } catch {
            #expect(error.field == "plans[0].code")
        }
    }

    @Test("apply creates, then changes nothing when applied again, and a changed plan becomes version 2; --dry-run writes nothing")
    func apply() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(run).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.yaml(run).write(toFile: path, atomically: true, encoding: .utf8)
        let dry = try await TestEnvironment.run(Self.binary, ["catalog", "apply", path, "--dry-run"])
        #expect(dry.status == 0, "\(dry.errors)")
        #expect(dry.output.contains("plan test-growth-\(run): would be created (version 1)"))
        #expect(dry.output.contains("dry run: 2 change(s) not applied"))
        let shown = try await TestEnvironment.run(Self.binary, ["catalog", "show", "test-growth-\(run)"])
        #expect(shown.status != 0 && shown.errors.contains("no plan test-growth-\(run)"))

        let first = try await TestEnvironment.output(of: Self.binary, ["catalog", "apply", path])
        #expect(first.contains("metric test_sms_\(run): created") && first.contains("plan test-growth-\(run): created (version 1)"))
        let again = try await TestEnvironment.output(of: Self.binary, ["catalog", "apply", path])
        #expect(again.contains("plan test-growth-\(run): unchanged") && again.contains("applied: 0 change(s)"))

        try Self.yaml(run, growthBase: 5900).write(toFile: path, atomically: true, encoding: .utf8)
        let changed = try await TestEnvironment.output(of: Self.binary, ["catalog", "apply", path])
        #expect(changed.contains("plan test-growth-\(run): changed (version 2)"))
        let json = try await TestEnvironment.output(of: Self.binary, ["catalog", "show", "test-growth-\(run)"])
        let plan = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let versions = plan?["versions"] as? [[String: Any]] ?? []
        #expect(versions.map { $0["base_cents"] as? Int } == [4900, 5900])
        #expect(try await TestEnvironment.output(of: Self.binary, ["catalog", "list"]).contains("plan test-growth-\(run)  v2  Growth  EUR 5900"))
        // Exported, the plan's newest version and its metrics make a file that applies as
        // it is and changes nothing (`show`'s JSON carries versions and counts `apply` refuses).
        let exported = try await TestEnvironment.output(of: Self.binary, ["catalog", "export", "--plan", "test-growth-\(run)"])
        let exportedFile = try JSONSerialization.jsonObject(with: Data(exported.utf8)) as? [String: Any]
        #expect((exportedFile?["plans"] as? [[String: Any]])?.map { $0["base_cents"] as? Int } == [5900], "\(exported)")
        #expect((exportedFile?["metrics"] as? [[String: Any]])?.contains { $0["code"] as? String == "test_sms_\(run)" } == true)
        let exportPath = path + ".json"
        defer { try? FileManager.default.removeItem(atPath: exportPath) }
        try exported.write(toFile: exportPath, atomically: true, encoding: .utf8)
        let reapplied = try await TestEnvironment.run(Self.binary, ["catalog", "apply", exportPath])
        #expect(reapplied.status == 0 && reapplied.output.contains("applied: 0 change(s)"), "\(reapplied)")
        let unknownPlan = try await TestEnvironment.run(Self.binary, ["catalog", "export", "--plan", "test-none-\(run)"])
        #expect(unknownPlan.status == 1 && unknownPlan.errors.contains("no plan test-none-\(run)"), "\(unknownPlan)")

        // Archived, then changed in the file: refused before anything is written (the new metric too).
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: TestEnvironment.databaseURL), size: 1, logger: Logger(label: "test"))
        _ = try await CatalogStore(pool: pool).archive("test-growth-\(run)", at: Date())
        await pool.close()
        try Self.yaml(run, growthBase: 6900).replacingOccurrences(of: "test_sms_\(run)", with: "test_mms_\(run)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let archived = try await TestEnvironment.run(Self.binary, ["catalog", "apply", path])
        #expect(archived.status != 0 && archived.errors.contains("plans[0].code"), "\(archived.errors)")
        #expect(!(try await TestEnvironment.output(of: Self.binary, ["catalog", "list"]).contains("test_mms_\(run)")))

        // A file with a mistake: refused whole, naming it, nothing written.
        let broken = Self.yaml("\(run)b").replacingOccurrences(of: "currency: EUR", with: "currency: ZZZ")
        try broken.write(toFile: path, atomically: true, encoding: .utf8)
        let refused = try await TestEnvironment.run(Self.binary, ["catalog", "apply", path])
        #expect(refused.status != 0 && refused.errors.contains("plans[0].currency") && refused.errors.contains("nothing was applied"))
        #expect(try await TestEnvironment.run(Self.binary, ["catalog", "show", "test-growth-\(run)b"]).status != 0)
    }
}
