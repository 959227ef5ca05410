// swift-tools-version:6.1
import PackageDescription

/// One settings array for every target: Swift 6 language mode plus the upcoming
/// features STYLE.md asks for. Warnings are fixed, never silenced.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let log = Target.Dependency.product(name: "Logging", package: "swift-log")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let httpTypes = Target.Dependency.product(name: "HTTPTypes", package: "swift-http-types")
let lifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")

let package = Package(
    name: "Tally",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "producer", targets: ["Producer"]),
        .executable(name: "aggregator", targets: ["Aggregator"]),
        .executable(name: "invoicer", targets: ["Invoicer"]),
        .executable(name: "notifier", targets: ["Notifier"]),
        .executable(name: "billing-api", targets: ["BillingAPI"]),
        .library(name: "Metering", targets: ["Metering"]),
        .executable(name: "tally-bench", targets: ["TallyBench"]),
        .library(name: "MeteringHummingbird", targets: ["MeteringHummingbird"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        // C libraries from Debian, each wrapped once by exactly one Swift module.
        .systemLibrary(name: "CRabbitMQ", pkgConfig: "librabbitmq", providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCairo", pkgConfig: "cairo", providers: [.apt(["libcairo2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CMalloc"),

        // Thin Swift clients over the C libraries; their blocking calls run on dedicated threads.
        .target(name: "BlockingIO", dependencies: ["COpenSSL"], swiftSettings: swiftSettings),
        .target(name: "CivilTime", swiftSettings: swiftSettings),
        // Connection URLs (DATABASE_URL, AMQP_URL, SMTP_URL) read one way for every client.
        .target(name: "ConnectionURLs", swiftSettings: swiftSettings),
        .target(name: "RabbitMQClient", dependencies: ["CRabbitMQ", "BlockingIO", "ConnectionURLs", log], swiftSettings: swiftSettings),
        .target(name: "PostgresClient", dependencies: ["CLibPQ", "BlockingIO", "CivilTime", "ConnectionURLs", log], swiftSettings: swiftSettings),
        .target(name: "CurlClient", dependencies: ["CCurl", "BlockingIO", "ConnectionURLs"], swiftSettings: swiftSettings),

        // SPEC §3's exact quantity, one type from the wire to the bill.
        .target(name: "Quantities", swiftSettings: swiftSettings),
        // The billing rules of SPEC §2: pure, no I/O, no clock reads; Foundation, Quantities and CivilTime (integer calendar) only.
        .target(name: "BillingEngine", dependencies: ["CivilTime", "Quantities"], exclude: ["README.md"], swiftSettings: swiftSettings),

        // The usage event of SPEC §3 and its validation: pure, no I/O.
        .target(name: "UsageEvents", dependencies: ["CivilTime", "Quantities"], swiftSettings: swiftSettings),

        // A durable, append-only disk spool for usage the broker cannot take yet.
        .target(name: "DiskSpool", dependencies: ["BlockingIO"], exclude: ["README.md"], swiftSettings: swiftSettings),

        // The metering library API servers link: track(), batching, confirms, spool.
        .target(
            name: "Metering",
            dependencies: ["UsageEvents", "RabbitMQClient", "TallyMessaging", "DiskSpool", log],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // The metering middleware for Hummingbird API servers.
        .target(
            name: "MeteringHummingbird",
            dependencies: ["Metering", "UsageEvents", hummingbird, nioCore, httpTypes, log],
            swiftSettings: swiftSettings
        ),

        // Stores over PostgreSQL and the shared runtime every executable uses.
        .target(
            name: "TallyStore",
            dependencies: ["PostgresClient", "BillingEngine", "CivilTime", crypto, log],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(name: "TallyMessaging", dependencies: ["RabbitMQClient", "UsageEvents", log], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(
            name: "TallyRuntime",
            dependencies: [
                "CMalloc", "CivilTime", "RabbitMQClient", "PostgresClient", "TallyStore", "TallyMessaging", log, argumentParser, lifecycle,
                unixSignals,
            ],
            swiftSettings: swiftSettings
        ),
        // The transactional outbox: enqueued in a store transaction, relayed to RabbitMQ by a Service.
        .target(
            name: "TallyOutbox",
            dependencies: ["PostgresClient", "RabbitMQClient", "TallyMessaging", "TallyStore", log, lifecycle],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // Billing runs and invoice generation, shared by the Invoicer and the billing API.
        .target(
            name: "Invoicing",
            dependencies: ["BillingEngine", "CivilTime", "TallyStore", "TallyOutbox", "TallyMessaging", "PostgresClient", "UsageEvents"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        // The pricing catalog as operators write it: plan versions and metrics read and checked (field paths).
        .target(
            name: "Catalog", dependencies: ["BillingEngine", "TallyStore", "UsageEvents", .product(name: "Yams", package: "Yams")],
            exclude: ["README.md"], swiftSettings: swiftSettings),
        // Pushing issued invoices to Stripe (customers, invoice items, invoices) without duplicates.
        .target(
            name: "StripeSync",
            dependencies: ["BillingEngine", "CivilTime", "CurlClient", "PostgresClient", "TallyMessaging", "TallyOutbox", "TallyStore", log],
            swiftSettings: swiftSettings),
        // Invoice PDFs drawn with cairo (real text, A4).
        .target(
            name: "InvoicePDF", dependencies: ["CCairo", "BillingEngine", "TallyRuntime", "TallyStore"], swiftSettings: swiftSettings),
        // What Tally's HTTP servers share: error shape, authentication, health.
        .target(
            name: "TallyHTTP",
            dependencies: [
                "TallyStore", "UsageEvents", hummingbird, nioCore, httpTypes, log, .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
            ], swiftSettings: swiftSettings),

        // One thin executable per role.
        .executableTarget(
            name: "Producer",
            dependencies: [
                "TallyRuntime", "TallyHTTP", "TallyStore", "TallyMessaging", "PostgresClient", "Metering", "UsageEvents", "CivilTime", "DiskSpool",
                "RabbitMQClient", "CurlClient", argumentParser, log, hummingbird, nioCore, httpTypes, lifecycle,
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Aggregator",
            dependencies: [
                "TallyRuntime", "TallyHTTP", "TallyStore", "TallyMessaging", "TallyOutbox", "PostgresClient", "RabbitMQClient", "UsageEvents",
                "CivilTime", "BillingEngine", "Metering", argumentParser, log, hummingbird, nioCore, lifecycle,
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Invoicer",
            dependencies: [
                "TallyRuntime", "TallyHTTP", "Invoicing", "StripeSync", "TallyMessaging", "TallyOutbox", "TallyStore", "PostgresClient",
                "RabbitMQClient", "Catalog",
                "UsageEvents", "CivilTime", argumentParser, hummingbird,
                log,
                lifecycle,
            ],
            swiftSettings: swiftSettings
        ),
        // Who is told about a billing event, and how: emails, signed webhooks, their records.
        .target(
            name: "Notifications",
            dependencies: [
                "TallyMessaging", "TallyStore", "CurlClient", "InvoicePDF", "Invoicing", "BillingEngine", "BlockingIO", crypto,
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Notifier",
            dependencies: [
                "TallyRuntime", "Notifications", "TallyMessaging", "TallyStore", "TallyHTTP", "PostgresClient", "RabbitMQClient", "CurlClient",
                "InvoicePDF", "Invoicing", argumentParser, log, hummingbird, lifecycle,
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "BillingAPI",
            dependencies: [
                "TallyRuntime", "TallyStore", "TallyHTTP", "PostgresClient", "BillingEngine", "Invoicing", "InvoicePDF", "UsageEvents", "CivilTime",
                "Notifications", "Catalog", "TallyMessaging", argumentParser, log, hummingbird, nioCore, crypto, httpTypes, lifecycle,
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: swiftSettings
        ),

        // Benchmarks of SPEC §7, run by ./ops/local.sh bench.
        .executableTarget(
            name: "TallyBench",
            dependencies: [
                "Metering", "DiskSpool", "RabbitMQClient", "TallyMessaging", "UsageEvents", "PostgresClient", "Invoicing",
                "TallyRuntime", "TallyOutbox", "Notifications", "InvoicePDF", "CurlClient", "TallyStore", argumentParser, log,
            ],
            swiftSettings: swiftSettings
        ),

        // Tests. Integration targets talk to the real servers that ops/local.sh starts.
        .target(name: "TallyTestSupport", dependencies: ["CivilTime"], path: "Tests/TallyTestSupport", swiftSettings: swiftSettings),
        .testTarget(
            name: "TallyRuntimeTests", dependencies: ["TallyRuntime", "TallyMessaging", "RabbitMQClient", "TallyTestSupport", log],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TallyOutboxTests",
            dependencies: ["TallyOutbox", "TallyStore", "TallyMessaging", "PostgresClient", "RabbitMQClient", "TallyTestSupport", log, lifecycle],
            swiftSettings: swiftSettings),
        .testTarget(name: "TallyMessagingTests", dependencies: ["TallyMessaging", "TallyTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "UsageEventsTests", dependencies: ["UsageEvents", "TallyTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "DiskSpoolTests", dependencies: ["DiskSpool", "TallyTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "MeteringTests",
            dependencies: [
                "Metering", "MeteringHummingbird", "DiskSpool", "UsageEvents", "RabbitMQClient", "TallyMessaging",
                "TallyTestSupport", hummingbird, httpTypes, nioCore, log,
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ProducerTests",
            dependencies: [
                "Producer", "Metering", "UsageEvents", "RabbitMQClient", "TallyMessaging", "TallyTestSupport",
                "PostgresClient", "TallyStore", "CurlClient", hummingbird, httpTypes, nioCore, log,
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AggregatorTests",
            dependencies: [
                "Aggregator", "Metering", "UsageEvents", "RabbitMQClient", "TallyMessaging", "TallyTestSupport", "PostgresClient",
                "BillingEngine", "CivilTime", "CurlClient", "TallyRuntime", "Invoicing", "TallyStore", log,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InvoicerTests",
            dependencies: [
                "Invoicer", "Invoicing", "TallyTestSupport", "PostgresClient", "RabbitMQClient", "TallyMessaging", "UsageEvents", "BillingEngine",
                "CurlClient", "StripeSync", "TallyStore", "TallyRuntime", "Catalog", log, lifecycle,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "NotifierTests",
            dependencies: [
                "Notifier", "Notifications", "Invoicing", "TallyMessaging", "TallyStore", "TallyTestSupport", "PostgresClient", "RabbitMQClient",
                "CurlClient", "UsageEvents", hummingbird, httpTypes, crypto, log,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InvoicePDFTests", dependencies: ["InvoicePDF", "Invoicing", "BillingEngine", "TallyRuntime", "TallyStore", "TallyTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(name: "BillingEngineTests", dependencies: ["BillingEngine", "TallyTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "CivilTimeTests", dependencies: ["CivilTime"], swiftSettings: swiftSettings),
        .testTarget(
            name: "OutageTests",
            dependencies: ["PostgresClient", "RabbitMQClient", "TallyMessaging", "Metering", "DiskSpool", "TallyTestSupport", log],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "BlockingIOTests", dependencies: ["BlockingIO"], swiftSettings: swiftSettings),
        .testTarget(
            name: "RabbitMQClientTests", dependencies: ["RabbitMQClient", "TallyMessaging", "TallyTestSupport", log], swiftSettings: swiftSettings),
        .testTarget(
            name: "PostgresClientTests", dependencies: ["PostgresClient", "ConnectionURLs", "CivilTime", "TallyTestSupport", log],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TallyStoreTests", dependencies: ["TallyStore", "BillingEngine", "PostgresClient", "TallyTestSupport", log],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "CurlClientTests",
            dependencies: ["CurlClient", "TallyTestSupport", hummingbird],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BillingAPITests",
            dependencies: [
                "BillingAPI", "BillingEngine", "TallyRuntime", "TallyHTTP", "TallyStore", "UsageEvents", "CivilTime", "TallyTestSupport",
                "PostgresClient",
                hummingbird, log,
                httpTypes, nioCore, crypto,
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
