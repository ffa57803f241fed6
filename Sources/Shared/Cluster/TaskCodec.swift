import Foundation
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// Conversions between the engine's task types and the wire's, shared by the
/// coordinator (which cuts inputs and places results) and the worker (which
/// rebuilds the engine's input and returns its output).
package enum TaskCodec {
    /// The wire form of `task`'s geometry (rect, displacement). Nil if a coordinate
    /// does not fit the wire's unsigned fields (cannot happen for planned tasks).
    package static func rect(_ task: TileTask) -> Wire.Rect? {
        let r = task.rect
        guard r.y >= 0, r.x >= 0, r.height > 0, r.width > 0,
            let y = UInt32(exactly: r.y), let x = UInt32(exactly: r.x),
            let h = UInt32(exactly: r.height), let w = UInt32(exactly: r.width)
        else { return nil }
        return Wire.Rect(y0: y, x0: x, height: h, width: w)
    }

    /// The same for a plain rectangle (a map tile).
    package static func rect(_ r: PixelRect) -> Wire.Rect? {
        rect(TileTask(mode: .dense, rect: r))
    }

    package static func pixelRect(_ r: Wire.Rect) -> PixelRect {
        PixelRect(y: Int(r.y0), x: Int(r.x0), height: Int(r.height), width: Int(r.width))
    }

    /// The wire form of what writing a shared-storage task's tile produced.
    package static func receipt(_ r: TileReceipt, for spec: Wire.TileTaskSpec) -> Wire.TileReceipt {
        Wire.TileReceipt(
            jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt,
            chunks: r.chunks.map { .init(key: $0.key, size: UInt64($0.size), crc32: $0.crc32) })
    }

    package static func mode(_ m: MapMode) -> Wire.Mode {
        switch m {
        case .naive: .naive
        case .fast: .fast
        case .shift: .shift
        case .dense: .dense
        }
    }

    package static func mode(_ m: Wire.Mode) -> MapMode {
        switch m {
        case .naive: .naive
        case .fast: .fast
        case .shift: .shift
        case .dense: .dense
        }
    }

    /// The engine task a wire task describes.
    package static func tileTask(_ spec: Wire.TaskSpec) -> TileTask {
        TileTask(
            mode: mode(spec.mode),
            rect: PixelRect(
                y: Int(spec.outputRect.y0), x: Int(spec.outputRect.x0),
                height: Int(spec.outputRect.height), width: Int(spec.outputRect.width)),
            displacement: Size2(Int(spec.displacementY), Int(spec.displacementX)),
            image: Size2(Int(spec.imageHeight), Int(spec.imageWidth)))
    }

    /// Raw samples of `rect` (padded coordinates) of `image`, mirrored beyond its edges
    /// exactly as `PixelRegion(image:paddedRect:halfPatch:)` does, as UInt8 or
    /// UInt16-LE bytes: what a task carries.
    package static func cut(_ image: PixelImage, paddedRect rect: PixelRect, halfPatch: Size2) -> Wire.PixelRegion {
        let (rows, cols) = rect.mirroredSources(image: Size2(image.height, image.width), halfPatch: halfPatch)
        return cut(image, rect: rect, rows: rows, cols: cols)
    }

    /// The same from an image on disk: reads only the rectangle the mirrored rows and
    /// columns span.
    package static func cut(
        _ file: RawPixelFile, paddedRect rect: PixelRect, halfPatch: Size2
    ) throws
        -> Wire.PixelRegion
    {
        let (rows, cols) = rect.mirroredSources(image: Size2(file.height, file.width), halfPatch: halfPatch)
        let (y0, y1) = (rows.min()!, rows.max()!), (x0, x1) = (cols.min()!, cols.max()!)
        let block = try file.read(PixelRect(y: y0, x: x0, height: y1 - y0 + 1, width: x1 - x0 + 1))
        return cut(block, rect: rect, rows: rows.map { $0 - y0 }, cols: cols.map { $0 - x0 })
    }

    /// Gathers `rows` × `cols` of `image` (source indices per output row and column).
    private static func cut(_ image: PixelImage, rect: PixelRect, rows: [Int], cols: [Int]) -> Wire.PixelRegion {
        let ch = image.channels
        let rowSamples = rect.width * ch
        switch image.samples {
        case .uint8(let values):
            var out = [UInt8](repeating: 0, count: rect.height * rowSamples)
            // Columns are consecutive except where they mirror at an edge: copy runs.
            let runs = Self.runs(cols)
            values.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    var i = 0
                    for r in rows {
                        let base = r * image.width * ch
                        for (start, count) in runs {
                            let n = count * ch
                            (dst.baseAddress! + i).update(from: src.baseAddress! + base + start * ch, count: n)
                            i += n
                        }
                    }
                }
            }
            return Wire.PixelRegion(
                height: UInt32(rect.height), width: UInt32(rect.width), channels: UInt32(ch),
                bytesPerSample: 1, pixels: out)
        case .uint16(let values):
            var out = [UInt8](repeating: 0, count: rect.height * rowSamples * 2)
            values.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    var i = 0
                    for r in rows {
                        let base = r * image.width * ch
                        for c in cols {
                            let s = base + c * ch
                            for k in 0..<ch {
                                let v = src[s + k]
                                dst[i] = UInt8(truncatingIfNeeded: v)
                                dst[i + 1] = UInt8(truncatingIfNeeded: v >> 8)
                                i += 2
                            }
                        }
                    }
                }
            }
            return Wire.PixelRegion(
                height: UInt32(rect.height), width: UInt32(rect.width), channels: UInt32(ch),
                bytesPerSample: 2, pixels: out)
        }
    }

    /// `cols` as (first, count) runs of consecutive indices.
    static func runs(_ cols: [Int]) -> [(Int, Int)] {
        var runs: [(Int, Int)] = []
        for c in cols {
            if let last = runs.last, last.0 + last.1 == c {
                runs[runs.count - 1].1 += 1
            } else {
                runs.append((c, 1))
            }
        }
        return runs
    }

    /// The engine's view of received pixels (unscaled float samples, HWC).
    package static func region(_ p: Wire.PixelRegion) -> PixelRegion {
        let n = Int(p.height) * Int(p.width) * Int(p.channels)
        var samples = [Float](repeating: 0, count: n)
        p.pixels.withUnsafeBufferPointer { src in
            if p.bytesPerSample == 1 {
                for i in 0..<n { samples[i] = Float(src[i]) }
            } else {
                for i in 0..<n { samples[i] = Float(UInt16(src[2 * i]) | UInt16(src[2 * i + 1]) << 8) }
            }
        }
        return PixelRegion(height: Int(p.height), width: Int(p.width), channels: Int(p.channels), samples: samples)
    }

    package static func preprocessing(_ p: Preprocessing) -> Wire.Preprocessing {
        Wire.Preprocessing(
            channelOrder: p.channelOrder == .bgr ? .bgr : .rgb, rawScale: p.rawScale, scale: p.scale,
            mean: p.mean, std: p.std)
    }

    package static func preprocessing(_ p: Wire.Preprocessing) -> Preprocessing {
        Preprocessing(
            mean: p.mean, rawScale: p.rawScale, scale: p.scale, channelOrder: p.channelOrder == .bgr ? .bgr : .rgb,
            std: p.std)
    }
}
