import ArgumentParser
import Foundation
import TesseraCUDA
import TesseraCore
import TesseraEngine
import TesseraModel
import TesseraPlan

/// `tessera-coordinator benchmark`: times the engine's modes on a synthetic image
/// against this machine's sgemm peak, in one run (benchmarks/run.sh adds a peer).
struct Benchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the modes on a synthetic image and compare with the sgemm peak.",
        discussion: """
            Without --weights the net gets fixed pseudo-random weights (the seed net's trained \
            weights are not published); the work is the same. GFLOP/s counts convolution \
            multiply-accumulates only (2 FLOPs each). naive (the classifier on every pixel's patch) \
            is timed on a --naive-crop square crop and extrapolated per pixel to the full size. Peak RSS \
            is the kernel's high-water mark of the process's resident set (VmHWM, getrusage's maxrss), \
            per mode: before each mode the free heap earlier modes left goes back to the system \
            (malloc_trim) and the mark restarts (/proc/self/clear_refs); the whole process's peak is \
            printed after the table. Run a release build.
            """
    )

    @OptionGroup var model: ModelOptions
    // `.unconditional` on the numbers: `--size -3` is a bad value, not a missing one (docs/CLI audit 36 F8).
    @Option(parsing: .unconditional, help: "Image side in pixels (a square RGB image of random pixels).")
    var size = 2000
    @Option(help: "Comma-separated modes to time, in this order.") var modes = "fast,shift,dense"
    @Option(parsing: .unconditional, help: "Tile size in map pixels (default: from the memory budget).") var tile: Int?
    @Option(parsing: .unconditional, help: "Threads (the default is this machine's core count).") var threads =
        ProcessInfo.processInfo
        .activeProcessorCount
    @Option(parsing: .unconditional, help: "Timed repetitions per mode; the best is reported.") var repeats = 1
    @Option(parsing: .unconditional, help: "Side of the crop naive is timed on (extrapolated per pixel).")
    var naiveCrop = 64
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @OptionGroup var compute: DeviceFlags

    /// Docs/CLI audit 36 F5: `--size 0` and `--tile 0` trapped (exit 132), a huge `--size` aborted (134), and 0
    /// threads, repeats or crop were taken without a word.
    func validate() throws {
        guard (1...32768).contains(size) else { throw ValidationError("--size must be between 1 and 32768") }
        if let tile, !(1...32768).contains(tile) { throw ValidationError("--tile must be between 1 and 32768") }
        guard (1...1024).contains(threads) else { throw ValidationError("--threads must be between 1 and 1024") }
        guard (1...1000).contains(repeats) else { throw ValidationError("--repeats must be between 1 and 1000") }
        guard (1...4096).contains(naiveCrop) else { throw ValidationError("--naive-crop must be between 1 and 4096") }
        let names = modes.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for name in names where MapMode(rawValue: name) == nil {
            throw ValidationError(
                "unknown mode '\(name)' in --modes: give some of "
                    + MapMode.allCases.map(\.rawValue).joined(separator: ", ") + ", separated by commas")
        }
        // The synthetic image is held in memory as float32 RGB.
        let imageBytes = size * size * 3 * MemoryLayout<Float>.size
        guard imageBytes <= SystemMemory.limit / 2 else {
            throw ValidationError(
                "--size \(size): its image alone takes \(SystemMemory.text(imageBytes)), more than half of this "
                    + "machine's memory (\(SystemMemory.text(SystemMemory.limit)))")
        }
    }

    func run() throws {
        let loaded = try ModelLoader.load(model.source(requireWeights: false))
        var classifier = loaded.classifier
        if !loaded.hasWeights { classifier = classifier.withRandomWeights(seed: 42) }
        let device = try compute.resolve()
        let engine = try MapEngine(classifier: classifier, patch: loaded.patchSize, allowPadding: true, device: device)
        let mapper = LocalMapper(
            engine: engine, preprocessing: Preprocessing(mean: [104, 117, 123]), threads: threads,
            memoryBudget: try device.tileMemoryBudget(cpuBudget: 768 << 20))
        let image = SyntheticImage(side: size, seed: 7)
        // The reference the GFLOP/s are compared with: OpenBLAS sgemm on the CPU, cuBLAS sgemm on a GPU.
        let peak: Double
        var peakPerCPUSecond: Double?
        var peakName = "sgemm peak"
        if case .cuda(let index, _) = device {
            peak = try CUDAContext.get(device: index).sgemmPeak()
            peakName = "GPU sgemm peak (cuBLAS fp32)"
        } else {
            (peak, peakPerCPUSecond) = try SgemmPeak.measureWithCPUTime(threads: threads)
        }
        var rows: [[String: Any]] = []
        var processPeak = 0
        var seconds: [MapMode: Double] = [:], macs: [MapMode: Int] = [:]
        for name in modes.split(separator: ",") {
            guard let mode = MapMode(rawValue: String(name)) else { continue }  // refused by validate()
            // naive runs the classifier per pixel: timed on a crop, extrapolated per pixel.
            let side = mode == .naive ? min(size, max(1, naiveCrop)) : size
            let scale = Double(size * size) / Double(side * side)
            let input = side == size ? image : SyntheticImage(side: side, seed: 7)
            let t = try tile ?? mapper.defaultTile(mode: mode, image: Size2(side, side))
            let tasks = TilePlan.tasks(mode: mode, image: Size2(side, side), tile: t, geometry: engine.tasks)
            let work = Int(Double(try tasks.reduce(0) { $0 + (try engine.convolutionMACs($1)) }) * scale)
            // Each mode's peak RSS on its own: the free heap earlier modes left (MemoryTuning
            // keeps it) goes back to the system, then the kernel's high-water mark restarts.
            processPeak = max(processPeak, ResourceUsage.peakResidentBytes)
            MemoryTuning.releaseFreeMemory()
            let perMode = ResourceUsage.resetPeakResident()
            var best = Double.infinity, bestCPU = Double.infinity
            for _ in 0..<max(1, repeats) {
                let start = DispatchTime.now(), cpu = ResourceUsage.cpuSeconds()
                _ = try mapper.map(input, mode: mode, tile: t)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
                bestCPU = min(bestCPU, ResourceUsage.cpuSeconds() - cpu)
            }
            let modePeak = ResourceUsage.peakResidentBytes
            processPeak = max(processPeak, modePeak)
            best *= scale
            bestCPU *= scale
            seconds[mode] = best
            macs[mode] = work
            let gflops = 2 * Double(work) / best / 1e9
            var row: [String: Any] = [
                "mode": mode.rawValue, "seconds": best, "tile": t, "tasks": tasks.count, "measuredSide": side,
                "gmacs": Double(work) / 1e9, "gflops": gflops, "fractionOfPeak": gflops / peak,
                "peakRSSMiB": Double(modePeak) / 1_048_576,
                "peakRSSScope": perMode ? "mode" : "process",
            ]
            // CPU time (all threads): steadier than wall time on a shared machine.
            if let peakPerCPUSecond, bestCPU > 0 {
                let perCPU = 2 * Double(work) / bestCPU / 1e9
                row["cpuSeconds"] = bestCPU
                row["gflopPerCPUSecond"] = perCPU
                row["fractionOfPeakPerCPUSecond"] = perCPU / peakPerCPUSecond
            }
            rows.append(row)
        }
        var summary: [String: Any] = [
            "image": size, "threads": threads, "sgemmPeakGflops": peak, "cpuModel": CPUFeatures.current.modelName,
            "device": device.description,
            "blasKernel": try BLAS.get().coreName, "modes": rows,
            "directConvolution": DirectConvolutionKernel.selected?.rawValue ?? "none",
        ]
        if let peakPerCPUSecond { summary["sgemmPeakGflopPerCPUSecond"] = peakPerCPUSecond }
        summary["processPeakRSSMiB"] = Double(max(processPeak, ResourceUsage.peakResidentBytes)) / 1_048_576
        if let s = seconds[.shift], let d = seconds[.dense], let ms = macs[.shift], let md = macs[.dense] {
            summary["denseSpeedupOverShift"] = s / d
            summary["shiftToDenseMACRatio"] = Double(ms) / Double(md)
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(
            "net \(classifier.name.isEmpty ? "(unnamed)" : classifier.name), image \(size)×\(size), device \(device), \(threads) threads, "
                + "BLAS kernel \(summary["blasKernel"]!), direct convolution \(summary["directConvolution"]!)")
        print("CPU \(CPUFeatures.current.modelName)")
        print(
            String(format: "%@: %.1f GFLOP/s", peakName, peak)
                + (peakPerCPUSecond.map { String(format: ", %.1f GFLOP per CPU-second", $0) } ?? ""))
        print("mode     seconds   GMAC    GFLOP/s  of peak  GFLOP/CPU-s  of peak  tile  tasks  peak RSS")
        for r in rows {
            let perCPU = (r["gflopPerCPUSecond"] as? Double).map { String(format: "%12.1f", $0) } ?? "           -"
            let ofCPU =
                (r["fractionOfPeakPerCPUSecond"] as? Double).map { String(format: "%7.0f%%", 100 * $0) } ?? "       -"
            print(
                String(
                    format: "%-7@ %8.3f %7.1f %9.1f %7.0f%% %@ %@ %5d %6d %7.0f MiB", r["mode"] as! String,
                    r["seconds"] as! Double, r["gmacs"] as! Double, r["gflops"] as! Double,
                    100 * (r["fractionOfPeak"] as! Double), perCPU, ofCPU, r["tile"] as! Int, r["tasks"] as! Int,
                    r["peakRSSMiB"] as! Double)
                    + ((r["measuredSide"] as! Int) != size
                        ? "  (timed on a \(r["measuredSide"]!)² crop, extrapolated)" : ""))
        }
        print(
            String(
                format: "peak RSS: %@; whole process %.0f MiB",
                rows.allSatisfy { $0["peakRSSScope"] as? String == "mode" }
                    ? "each mode's own (VmHWM restarted per mode)" : "the process's so far (could not restart it)",
                summary["processPeakRSSMiB"] as! Double))
        if let speedup = summary["denseSpeedupOverShift"] as? Double,
            let ratio = summary["shiftToDenseMACRatio"] as? Double
        {
            print(
                String(
                    format: "dense speed-up over shift: %.2f× (MAC ratio %.2f×, %.0f%% of it)",
                    speedup, ratio, 100 * speedup / ratio))
        }
    }
}

/// A square RGB image of reproducible random pixels.
struct SyntheticImage: PixelSource {
    let width: Int, height: Int, channels = 3
    private let pixels: [UInt8]
    init(side: Int, seed: UInt64) {
        width = side
        height = side
        var state = seed
        pixels = (0..<(side * side * 3)).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }
    func value(y: Int, x: Int, channel: Int) -> Float { Float(pixels[(y * width + x) * 3 + channel]) }
}
