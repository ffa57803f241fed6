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
            suite: "ImageMemoryTests", variable: Self.probeVariable, value: "4000:\(resultPath)",
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
