import ArgumentParser
import Catalog
import Foundation
import Logging
import PostgresClient
import TallyRuntime
import TallyStore

/// `invoicer catalog list|show|apply`: the pricing catalog from the command line, so a
/// catalog can live in the operator's git and be applied like a migration.
struct CatalogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "List, show, export or apply the pricing catalog (plans and billable metrics).",
        discussion: ConfigurationReport.helpText([.databaseURL]),
        subcommands: [List.self, Show.self, Export.self, Apply.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every plan (its newest version) and every billable metric.")

        func run() async throws {
            let (plans, metrics) = try await CatalogCommand.withStore { (try await $0.plans(), try await $0.metrics()) }
            for plan in plans {
                guard let newest = plan.versions.last else { continue }
                let users = plan.versions.reduce(0) { $0 + ($1.subscriptions ?? 0) }
                print(
                    "plan \(plan.code)  v\(newest.version)  \(newest.name)  \(newest.currency.uppercased()) \(newest.baseCents) a \(newest.interval)  "
                        + "\(newest.charges.count) charge(s)  \(users) subscription(s)\(plan.archivedAt == nil ? "" : "  archived")")
            }
            for metric in metrics {
                print("metric \(metric.code)  \(metric.aggregation)\(metric.field.map { "(\($0))" } ?? "")  \(metric.name)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A plan with every version, as JSON, as GET /v1/plans/{code} shows it (`export` writes a file `apply` takes).")
        @Argument(help: "The plan's code.") var code: String

        func run() async throws {
            guard let plan = try await CatalogCommand.withStore({ try await $0.plan(code) }) else {
                throw CommandFailure("no plan \(code); `invoicer catalog list` shows them")
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(plan), as: UTF8.self))
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the catalog as a file `apply` takes (JSON): metrics, and each plan's newest version.",
            discussion: """
                Without --plan: every metric, and every plan that is not archived. With --plan: those plans and \
                the metrics they charge. Applying the output to the same database changes nothing; it is the \
                way to start keeping a catalog in git.
                """)
        @Option(name: .customLong("plan"), help: "Only this plan and the metrics it charges (repeatable).") var codes: [String] = []

        func run() async throws {
            let (plans, metrics) = try await CatalogCommand.withStore { (try await $0.plans(), try await $0.metrics()) }
            let chosen: [StoredPlan]
            if codes.isEmpty {
                chosen = plans.filter { $0.archivedAt == nil }
            } else {
                let missing = codes.filter { code in !plans.contains { $0.code == code } }
                guard missing.isEmpty else {
                    throw CommandFailure("no plan \(missing.joined(separator: ", ")); `invoicer catalog list` shows them")
                }
                chosen = codes.compactMap { code in plans.first { $0.code == code } }
            }
            let charged = Set(chosen.flatMap { $0.versions.last?.charges.map(\.metric) ?? [] })
            let encoder = JSONEncoder()
            // The plan's version as its definition: what the store adds (its number, when it
            // was made, how many subscriptions name it) is not something `apply` takes.
            func object(_ value: some Encodable, dropping keys: [String] = []) throws -> Any {
                var members = try JSONSerialization.jsonObject(with: try encoder.encode(value)) as? [String: Any] ?? [:]
                for key in keys { members[key] = nil }
                return members
            }
            let file: [String: Any] = [
                "metrics": try metrics.filter { codes.isEmpty || charged.contains($0.code) }.map { try object($0) },
                "plans": try chosen.compactMap(\.versions.last).map { try object($0, dropping: ["version", "created_at", "subscriptions"]) },
            ]
            let data = try JSONSerialization.data(withJSONObject: file, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply a catalog file (YAML or JSON: metrics and plans as the API takes them).",
            discussion: """
                Idempotent: a metric or plan identical to what is stored is left alone; a changed plan becomes
                its next version (subscriptions keep theirs); a new one is created. The whole file is checked
                before anything is written, and a refusal names the entry and field.
                """)
        @Argument(help: "The catalog file (.yaml, .yml or .json).") var file: String
        @Flag(help: "Say what would change, change nothing.") var dryRun = false

        func run() async throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw CommandFailure("cannot read \(file)")
            }
            let catalog: CatalogFile
            do {
                catalog = try CatalogFile(text: text, yaml: !file.lowercased().hasSuffix(".json"))
            } catch {
                throw CommandFailure("\(file): \(error.field): \(error.message); nothing was applied")
            }
            let changes: CatalogChanges
            do {
                changes = try await CatalogCommand.withStore { try await catalog.apply(to: $0, dryRun: dryRun) }
            } catch let refusal as CatalogRefusal {
                throw CommandFailure("\(file): \(refusal.field): \(refusal.message)")
            }
            let verb = dryRun ? "would be " : ""
            for (code, action) in changes.metrics { print("metric \(code): \(verb)\(action.rawValue)") }
            for (code, action, version) in changes.plans {
                print("plan \(code): \(verb)\(action.rawValue)\(action == .unchanged ? "" : " (version \(version))")")
            }
            let changed = changes.metrics.filter { $0.action != .unchanged }.count + changes.plans.filter { $0.action != .unchanged }.count
            print(dryRun ? "dry run: \(changed) change(s) not applied" : "applied: \(changed) change(s)")
        }
    }

    /// `body` with the catalog of `DATABASE_URL`, its connection closed afterwards.
    static func withStore<T>(_ body: (CatalogStore) async throws -> T) async throws -> T {
        var logger = Logger(label: "invoicer.catalog")
        logger.logLevel = .error
        let url = try ConfigurationReader().string(.databaseURL)
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: url), size: 1, logger: logger)
        do {
            let result = try await body(CatalogStore(pool: pool))
            await pool.close()
            return result
        } catch {
            await pool.close()
            throw error
        }
    }
}
