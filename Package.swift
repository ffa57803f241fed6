// swift-tools-version: 6.0
import PackageDescription

// MARK: - Shared settings

/// The project is written in the Swift 5 language mode: the engine hands raw
/// buffers to worker threads (DispatchQueue.concurrentPerform), which strict
/// Swift 6 checking would force through `@unchecked Sendable` wrappers on
/// every kernel without making them any safer.
let swiftSettings: [SwiftSetting] = []

// MARK: - C libraries (system-library targets)

let cLibraries: [Target] = [
    // libzmq (Debian: libzmq3-dev). Its header is in /usr/include; no pkgConfig,
    // because libzmq.pc carries an `-isystem` flag SwiftPM refuses with a warning.
    .systemLibrary(
        name: "CZeroMQ",
        path: "Sources/CZeroMQ",
        providers: [.apt(["libzmq3-dev"])]
    ),
    // OpenBLAS (Debian: libopenblas-dev). Header only: the library is loaded
    // with dlopen by `BLAS` after OPENBLAS_CORETYPE is chosen, because
    // OpenBLAS reads that variable once, when it is loaded.
    .systemLibrary(
        name: "COpenBLAS",
        path: "Sources/COpenBLAS",
        providers: [.apt(["libopenblas-dev"])]
    ),
    // libpng (Debian: libpng-dev).
    .systemLibrary(
        name: "CLibPNG",
        path: "Sources/CLibPNG",
        pkgConfig: "libpng",
        providers: [.apt(["libpng-dev"])]
    ),
]

// MARK: - C helpers (compiled targets)

let cHelpers: [Target] = [
    // libpng's row-by-row API reports errors by longjmp, which Swift cannot
    // survive: this target owns every setjmp and returns status codes.
    .target(name: "CPNGIO", dependencies: ["CLibPNG"], path: "Sources/CPNGIO"),
    // Inner loops that Swift cannot vectorise (libm calls): exact IEEE arithmetic,
    // no FMA contraction, so results equal the scalar Swift formula bit for bit.
    .target(name: "CKernels", path: "Sources/CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])]),
]

// MARK: - Package

let package = Package(
    name: "Tessera",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tessera-coordinator", targets: ["Coordinator"]),
        .executable(name: "tessera-worker", targets: ["Worker"]),
        .library(name: "TesseraShared", targets: ["Shared"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: cLibraries + cHelpers + [
        .target(
            name: "Shared",
            dependencies: [
                "CZeroMQ", "COpenBLAS", "CLibPNG", "CPNGIO", "CKernels",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Shared",
            exclude: ["Model/Caffe/caffe.proto"],
            swiftSettings: swiftSettings
        ),
        // Command-line helpers both binaries share: options from the environment
        // (TESSERA_…), CURVE key options.
        .target(
            name: "CLISupport",
            dependencies: [
                "Shared",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/CLISupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Coordinator",
            dependencies: [
                "Shared", "CLISupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Coordinator",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Worker",
            dependencies: [
                "Shared", "CLISupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Worker",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SharedTests",
            // The executables too: the environment-variable test parses their real commands.
            dependencies: ["Shared", "CZeroMQ", "CLibPNG", "COpenBLAS", "CLISupport", "Coordinator", "Worker",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Tests/SharedTests",
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v5]
)
