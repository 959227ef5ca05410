// swift-tools-version:6.1
import PackageDescription

// A small API server that meters its usage with Tally's library, exactly as the README
// shows: it depends on Tally by path and uses only the `Metering` and
// `MeteringHummingbird` products. `./ops/local.sh test` builds it, so the README's
// snippet cannot drift from the library.
let package = Package(
    name: "SampleAPI",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Tally", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .executableTarget(
            name: "SampleAPI",
            dependencies: [
                .product(name: "Metering", package: "Tally"),
                .product(name: "MeteringHummingbird", package: "Tally"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        )
    ]
)
