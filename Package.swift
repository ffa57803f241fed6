// swift-tools-version: 6.0
import PackageDescription

// MARK: - Shared settings

/// Targets whose code hands raw buffers to worker threads (the engine's kernels
/// under DispatchQueue.concurrentPerform, the CUDA backend) stay in the Swift 5
/// language mode: strict Swift 6 checking would force `@unchecked Sendable`
/// wrappers on every kernel without making them any safer. The others are
/// checked in the Swift 6 language mode (strict concurrency) where they are ready.
let swift5: [SwiftSetting] = [.swiftLanguageMode(.v5)]
let swift6: [SwiftSetting] = [.swiftLanguageMode(.v6)]

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
    // libtiff (Debian: libtiff-dev): its varargs parts (tags, error handlers) go through
    // the CSlideIO (reading) and CTIFFIO (writing) helpers, which Swift cannot call.
    .systemLibrary(name: "CTIFF", path: "Sources/CTIFF", pkgConfig: "libtiff-4", providers: [.apt(["libtiff-dev"])]),
    // OpenSlide 3.4 (Debian: libopenslide-dev): a plain C API, called from TesseraImage.
    .systemLibrary(
        name: "COpenSlide", path: "Sources/COpenSlide", pkgConfig: "openslide",
        providers: [.apt(["libopenslide-dev"])]),
    // zlib (Debian: zlib1g-dev): stores written before blosc, the TIFF export's deflate, and the check of
    // deflate tiles read (CSlideIO).
    .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    // c-blosc 1 (Debian: libblosc-dev): Zarr chunk compression (LZ4 + shuffle, as bioformats2raw writes).
    .systemLibrary(name: "CBlosc", path: "Sources/CBlosc", pkgConfig: "blosc", providers: [.apt(["libblosc-dev"])]),
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
    // Owns every libtiff call: per-handle error/warning handlers (varargs callbacks),
    // tag access, and the per-tile error count that catches corrupt JPEG tiles
    // libtiff reports as decoded.
    .target(name: "CSlideIO", dependencies: ["CTIFF", "CZlib"], path: "Sources/CSlideIO"),
    // TIFFSetField and the error handlers for the map's TIFF export.
    .target(name: "CTIFFIO", dependencies: ["CTIFF"], path: "Sources/CTIFFIO"),
    // Inner loops that Swift cannot vectorise (libm calls): exact IEEE arithmetic,
    // no FMA contraction, so results equal the scalar Swift formula bit for bit.
    // CRC-32 by carry-less multiplication (chosen at run time) or tables: every
    // chunk, upload and result the coordinator stores is checksummed once.
    .target(name: "CChecksum", path: "Sources/CChecksum", cSettings: [.unsafeFlags(["-O3"])]),
    .target(
        name: "CKernels", path: "Sources/CKernels",
        cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])]),
]

// MARK: - Tessera modules (Sources/Shared/*)
//
// One module per concern, each depending only on the ones before it in this list
// (docs/ARCHITECTURE.md draws the graph; Tests/ArchitectureTests checks it):
//
//   TesseraCore   plain value types: sizes, rects, pixel sources, maps, checksums, durable files → CChecksum
//   TesseraImage  PNG and .npy in and out, output writers                      → Core
//   TesseraModel  Caffe and ONNX import, nets, surgery, geometry, preprocessing → Core, Image (.npy weights)
//   TesseraPlan   modes, tasks, tile plans, map assembly: planning, no compute → Core, Model
//   TesseraEngine tensors, kernels, BLAS, runners, the local mapper           → Core, Model, Plan
//   TesseraCUDA   the GPU backend, installed into the engine at start-up       → Engine
//   TesseraWire   ZeroMQ, CURVE/ZAP, the binary protocol                       → Core
//   TesseraCluster what coordinator and workers share: task codec, model bundles, job options → Wire, Plan, Image
//   TesseraMetrics metrics (swift-metrics → swift-prometheus), /metrics /healthz /readyz → Core
//   CLISupport    the executables' shared CLI helpers and system report
//   CoordinatorService (Sources/Coordinator/Service): scheduling, store, resume → Cluster; never Engine

let modules: [Target] = [
    .target(name: "TesseraCore", dependencies: ["CChecksum"], path: "Sources/Shared/Core", swiftSettings: swift6),
    .target(
        name: "TesseraImage",
        dependencies: [
            "TesseraCore", "CPNGIO", "CSlideIO", "COpenSlide", "CTIFF", "CTIFFIO", "CZlib", "CBlosc",
            .product(name: "Logging", package: "swift-log"),
        ],
        path: "Sources/Shared/Image",
        swiftSettings: swift5),
    .target(
        name: "TesseraModel",
        dependencies: [
            "TesseraCore", "TesseraImage",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ],
        path: "Sources/Shared/Model",
        exclude: ["Caffe/caffe.proto", "ONNX/onnx.proto"],
        swiftSettings: swift6
    ),
    .target(
        name: "TesseraPlan", dependencies: ["TesseraCore", "TesseraModel"], path: "Sources/Shared/Plan",
        swiftSettings: swift6),
    .target(
        name: "TesseraEngine",
        dependencies: ["TesseraCore", "TesseraModel", "TesseraPlan", "CKernels", "COpenBLAS"],
        path: "Sources/Shared/Engine",
        swiftSettings: swift5
    ),
    .target(
        name: "TesseraCUDA", dependencies: ["TesseraCore", "TesseraModel", "TesseraEngine"],
        path: "Sources/Shared/CUDA", swiftSettings: swift5),
    .target(
        name: "TesseraWire",
        dependencies: ["TesseraCore", "CZeroMQ", .product(name: "Logging", package: "swift-log")],
        path: "Sources/Shared/Wire",
        swiftSettings: swift6
    ),
    .target(
        name: "TesseraCluster",
        dependencies: [
            "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraWire",
            .product(name: "Logging", package: "swift-log"),
        ],
        path: "Sources/Shared/Cluster",
        swiftSettings: swift6
    ),
    // Metrics and health: swift-metrics recorded into swift-prometheus' registry, and a
    // small POSIX-socket HTTP server for /metrics, /healthz and /readyz.
    .target(
        name: "TesseraMetrics",
        dependencies: [
            "TesseraCore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ],
        path: "Sources/Shared/Metrics",
        swiftSettings: swift6
    ),
    // Command-line helpers both executables share: options from the environment
    // (TESSERA_…), CURVE key options, stop signals, the system report.
    .target(
        name: "CLISupport",
        dependencies: [
            "TesseraCore", "TesseraImage", "TesseraModel", "TesseraEngine", "TesseraCUDA", "TesseraWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
        path: "Sources/Shared/CLISupport",
        swiftSettings: swift5
    ),
]

// MARK: - Executables and their services

let services: [Target] = [
    // The coordinator's scheduling service: plans from `ModelPlan` only, so it never
    // loads BLAS or builds an engine.
    .target(
        name: "CoordinatorService",
        dependencies: [
            "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraWire", "TesseraCluster",
            "TesseraMetrics",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ],
        path: "Sources/Coordinator/Service",
        swiftSettings: swift6
    ),
    .executableTarget(
        name: "Coordinator",
        dependencies: [
            "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraEngine", "TesseraCUDA",
            "TesseraWire", "TesseraCluster", "CoordinatorService", "CLISupport", "TesseraMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ],
        path: "Sources/Coordinator/CLI",
        swiftSettings: swift5
    ),
    .executableTarget(
        name: "Worker",
        dependencies: [
            "TesseraCore", "TesseraModel", "TesseraPlan", "TesseraEngine", "TesseraCUDA", "TesseraWire",
            "TesseraCluster", "TesseraImage", "CLISupport", "TesseraMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ],
        path: "Sources/Worker",
        swiftSettings: swift6
    ),
]

// MARK: - Tests

let allModules: [Target.Dependency] = [
    "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraEngine",
    "TesseraCUDA", "TesseraWire", "TesseraCluster", "TesseraMetrics",
]

let tests: [Target] = [
    // Helpers every test target shares: seeded random numbers, temporary folders,
    // test nets, image and model fixtures, process groups.
    .target(
        name: "TestSupport", dependencies: allModules + ["CPNGIO"], path: "Tests/TestSupport",
        swiftSettings: swift5),
    .testTarget(
        name: "CoreTests", dependencies: allModules + ["TestSupport"], path: "Tests/CoreTests",
        swiftSettings: swift5),
    .testTarget(
        name: "ImageTests", dependencies: allModules + ["TestSupport"], path: "Tests/ImageTests",
        exclude: ["Slide/make_fixtures.py"], swiftSettings: swift5),
    .testTarget(
        name: "ModelTests",
        dependencies: allModules + [
            "TestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/ModelTests",
        swiftSettings: swift5),
    .testTarget(
        name: "EngineTests", dependencies: allModules + ["TestSupport", "COpenBLAS"], path: "Tests/EngineTests",
        swiftSettings: swift5),
    .testTarget(
        name: "WireTests", dependencies: allModules + ["TestSupport", "CZeroMQ"], path: "Tests/WireTests",
        swiftSettings: swift5),
    .testTarget(
        name: "ClusterTests",
        dependencies: allModules + [
            "TestSupport", "CoordinatorService", .product(name: "Logging", package: "swift-log"),
        ],
        path: "Tests/ClusterTests", swiftSettings: swift5),
    .testTarget(
        name: "FuzzTests",
        dependencies: allModules + [
            "TestSupport", "CLibPNG", "CPNGIO", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ], path: "Tests/FuzzTests",
        swiftSettings: swift5),
    .testTarget(
        name: "MetricsTests",
        dependencies: ["TesseraMetrics", "TestSupport", .product(name: "CoreMetrics", package: "swift-metrics")],
        path: "Tests/MetricsTests",
        swiftSettings: swift5),
    // The module graph: every import checked against docs/ARCHITECTURE.md's table, and
    // against the dependencies declared here.
    .testTarget(name: "ArchitectureTests", path: "Tests/ArchitectureTests", swiftSettings: swift6),
    // Suites that start the built executables (cluster, CLI, deploy files) and the
    // architecture check: `swift test --skip IntegrationTests` leaves them out.
    .testTarget(
        name: "IntegrationTests",
        dependencies: allModules + [
            "TestSupport", "CoordinatorService", "CLISupport", "Coordinator", "Worker", "CLibPNG", "CZeroMQ",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ],
        path: "Tests/IntegrationTests",
        swiftSettings: swift5
    ),
]

// MARK: - Package

let package = Package(
    name: "Tessera",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tessera-coordinator", targets: ["Coordinator"]),
        .executable(name: "tessera-worker", targets: ["Worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: cLibraries + cHelpers + modules + services + tests
)
