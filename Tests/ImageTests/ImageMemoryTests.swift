import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// Peak memory while writing outputs from a map, measured in a child process
/// (this test binary run again with only this test selected), so that no other
/// test's allocations count. `benchmarks/png-memory.sh` runs the same probe at
/// 16000×16000.
@Suite("Output memory")
struct ImageMemoryTests {
    static let probeVariable = "TESSERA_PNG_MEMORY_PROBE"

    @Test("writing a probability PNG adds a few rows of memory, not a second image")
    func memoryProbe() throws {
        let environment = ProcessInfo.processInfo.environment
        if let spec = environment[Self.probeVariable] {
            // Child: "<size>:<result file>".
            let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
            try Self.runProbe(size: Int(parts[0])!, resultPath: parts[1])
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let resultPath = directory.file("result.txt")
        let child = try runProbeChild(
            suite: "ImageMemoryTests/memoryProbe", variable: Self.probeVariable, value: "4000:\(resultPath)",
            resultPath: resultPath)
        guard let result = child.result else {
            Issue.record("the probe child wrote no result (status \(child.status)): \(child.output.suffix(2000))")
            return
        }
        print("memory probe 4000×4000:\n\(result)")
        let map = 2 * 4000 * 4000 * 4
        for line in result.split(separator: "\n") where line.hasPrefix("extra ") {
            let fields = line.split(separator: " ")
            let extra = Int(fields[2])!
            // A few rows are 16–32 kB here; zlib and libpng add about 1 MB.
            #expect(extra < 8 << 20, "\(line): more than 8 MB on top of the map")
            #expect(extra < map / 20, "\(line)")
        }
    }

    static let tiffProbeVariable = "TESSERA_TIFF_MEMORY_PROBE"

    /// Memory audit 50 F1: the TIFF export's chunk cache counted chunks (16 per core, plus some), not bytes: a map
    /// of large tiles was held whole (1.6 GB for a 16 000² float32 map on 2 cores).
    @Test("exporting a map of 8 MiB chunks to TIFF holds a few chunks, not the 128 MiB map")
    func tiffExportMemory() throws {
        if let resultPath = ProcessInfo.processInfo.environment[Self.tiffProbeVariable] {
            let directory = try TemporaryDirectory()
            defer { directory.cleanup() }
            let side = 1024, grid = 4
            let layout = try MapLayout(
                classes: 2, height: side * grid, width: side * grid, tileSize: side, dtype: .float32, levels: 1)
            let store = try MapStore.create(at: directory.file("map.zarr"), layout: layout)
            var values = [Float](repeating: 0, count: 2 * side * side)
            for i in 0..<(side * side) {
                values[side * side + i] = Float((i * 7919) % 1000) / 999
                values[i] = 1 - values[side * side + i]
            }
            for row in 0..<grid {
                for column in 0..<grid {
                    _ = try values.withUnsafeBufferPointer {
                        try store.write(tile: TileIndex(row: row, column: column), values: $0)
                    }
                }
            }
            try store.finish()
            let reopened = try MapStore.open(at: directory.file("map.zarr"))
            _ = try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
            let before = Self.residentMemory().current
            try TIFFMapExport.write(store: reopened, to: directory.file("map.tif"))
            try "extra \(Self.residentMemory().peak - before)\n".write(
                toFile: resultPath, atomically: true, encoding: .utf8)
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let resultPath = directory.file("result.txt")
        let child = try runProbeChild(
            suite: "ImageMemoryTests/tiffExportMemory", variable: Self.tiffProbeVariable, value: resultPath,
            resultPath: resultPath)
        guard let result = child.result,
            let extra = Int(result.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
        else {
            Issue.record("the probe child wrote no result (status \(child.status)): \(child.output.suffix(2000))")
            return
        }
        // 64 MiB of chunks, a batch of TIFF tiles (4 per core, 512 KiB each) as read, padded and deflated, and some
        // slack: 100 MiB on 2 cores. The whole map, which the old cache held on top of the batch, is 128 MiB.
        let batch = 4 * max(1, ProcessInfo.processInfo.activeProcessorCount)
        let limit = (64 << 20) + 3 * batch * (2 * 256 * 256 * 4) + (24 << 20)
        #expect(extra < limit, "the TIFF export took \(extra >> 20) MiB above the store (limit \(limit >> 20) MiB)")
    }

    /// Resident memory and its peak, from /proc/self/status, in bytes.
    static func residentMemory() -> (current: Int, peak: Int) {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
            }
            return 0
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// Builds a 2-class size×size map, then writes each output, recording the
    /// peak resident memory above what the process held before each write.
    static func runProbe(size: Int, resultPath: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        var map = ProbabilityMap(classes: 2, height: size, width: size)
        map.data.withUnsafeMutableBufferPointer { data in
            for y in 0..<size {
                for x in 0..<size {
                    let p = Float((x * 7 + y * 13) % 1000) / 999
                    data[size * size + y * size + x] = p
                    data[y * size + x] = 1 - p
                }
            }
        }
        var lines = ["map \(map.data.count * 4)"]
        let writes: [(String, () throws -> Void)] = [
            ("prob8", { try writeProbabilityPNG(map: map, classIndex: 1, bitDepth: 8, to: directory.file("p8.png")) }),
            (
                "prob16",
                { try writeProbabilityPNG(map: map, classIndex: 1, bitDepth: 16, to: directory.file("p16.png")) }
            ),
            ("labels", { try writeLabelsPNG(map: map, to: directory.file("labels.png")) }),
            ("npy", { try NPY.write(map, to: directory.file("map.npy")) }),
        ]
        for (name, write) in writes {
            // "5" resets the peak (VmHWM) to the current resident size (Linux ≥ 4.0).
            let reset = (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil
            let before = residentMemory()
            let start = ContinuousClock.now
            try write()
            let seconds = (ContinuousClock.now - start).components
            let after = residentMemory()
            let base = reset ? before.current : before.peak
            lines.append(
                "extra \(name) \(max(after.peak - base, 0)) peak \(after.peak) seconds \(seconds.seconds)"
                    + (reset ? "" : " (peak not reset)"))
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: resultPath, atomically: true, encoding: .utf8)
    }
}
