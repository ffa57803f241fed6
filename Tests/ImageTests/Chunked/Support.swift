import Foundation
import TestSupport

@testable import TesseraCore
@testable import TesseraImage

/// A fresh folder under the system's temporary directory.
func temporaryDirectory(_ label: String) throws -> String {
    let path = NSTemporaryDirectory() + "chunked-maps-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

extension SplitMix64 {
    /// Uniform in [lo, hi).
    mutating func float(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * nextUnitFloat() }
}

/// classes × height × width values slightly outside [0, 1] (to exercise the
/// clamp) with some exact halves of the integer steps (to exercise rounding).
func randomMap(classes: Int, height: Int, width: Int, seed: UInt64) -> [Float] {
    var random = SplitMix64(seed: seed)
    return (0..<(classes * height * width)).map { i in
        switch i % 11 {
        case 3: Float(random.next() % 255) / 255 + 0.5 / 255
        case 7: 0.5
        default: random.float(-0.05, 1.05)
        }
    }
}

/// The C × rect values of a C × H × W map.
func crop(_ map: [Float], classes: Int, height: Int, width: Int, _ rect: PixelRect) -> [Float] {
    var out: [Float] = []
    out.reserveCapacity(classes * rect.height * rect.width)
    for c in 0..<classes {
        for y in rect.y..<(rect.y + rect.height) {
            let start = (c * height + y) * width + rect.x
            out.append(contentsOf: map[start..<(start + rect.width)])
        }
    }
    return out
}

/// Equal bit for bit, or both NaN.
func sameValues(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
}

/// Writes `values` as raw little-endian float32.
func writeRaw(_ values: [Float], to path: String) throws {
    try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
}

/// Runs the reference script on a JSON spec; returns (exit status, output).
func runReference(_ spec: [String: Any], in directory: String) throws -> (Int32, String) {
    let script = directory + "/reference.py", specPath = directory + "/spec.json"
    try referenceScript.write(toFile: script, atomically: true, encoding: .utf8)
    try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: specPath))
    return try runCommand(["python3", script, specPath])
}

/// A finished store of `layout` at `path`, every level-0 tile written with `values(rect, column)` (C × rect values).
func finishedStore(
    _ layout: MapLayout, at path: String, values: (PixelRect, Int) -> [Float]
) throws -> MapStore {
    let store = try MapStore.create(at: path, layout: layout)
    let rows = (layout.height + layout.tileSize - 1) / layout.tileSize
    let columns = (layout.width + layout.tileSize - 1) / layout.tileSize
    for column in 0..<columns {
        for row in 0..<rows {
            let rect = layout.rect(of: TileIndex(row: row, column: column))
            _ = try values(rect, column).withUnsafeBufferPointer { try store.write(rect: rect, values: $0) }
        }
    }
    try store.finish()
    return store
}
