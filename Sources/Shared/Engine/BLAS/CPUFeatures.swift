import Foundation

/// The SIMD features of this CPU that decide which OpenBLAS kernel to load,
/// read from `/proc/cpuinfo` (Linux). Elsewhere nothing is known and OpenBLAS
/// detects the CPU itself.
package struct CPUFeatures: Sendable {
    package let flags: Set<String>
    package let modelName: String

    package static let current: CPUFeatures = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
            return CPUFeatures(flags: [], modelName: "unknown")
        }
        return CPUFeatures(cpuinfo: text)
    }()

    package init(flags: Set<String>, modelName: String) {
        self.flags = flags
        self.modelName = modelName
    }

    /// Parses the first processor block of a `/proc/cpuinfo` text.
    package init(cpuinfo text: String) {
        var flags = Set<String>()
        var model = "unknown"
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            if key == "flags", flags.isEmpty {
                flags = Set(value.split(separator: " ").map(String.init))
            } else if key == "model name", model == "unknown" {
                model = value
            }
        }
        self.init(flags: flags, modelName: model)
    }

    /// The OpenBLAS core type whose sgemm kernel this CPU runs best, among
    /// those OpenBLAS 0.3.x knows: SkylakeX (AVX-512), Haswell (AVX2 + FMA),
    /// Sandybridge (AVX). Nil when the features are unknown.
    package var preferredOpenBLASCore: String? {
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]) {
            return "SkylakeX"
        }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        if flags.contains("avx") { return "Sandybridge" }
        return nil
    }

    /// A short description for logs: the widest vector extension present.
    package var summary: String {
        if flags.contains("avx512f") { return "avx512" }
        if flags.contains("avx2") { return "avx2" }
        if flags.contains("avx") { return "avx" }
        return flags.isEmpty ? "unknown" : "sse"
    }
}
