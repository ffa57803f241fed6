import Foundation
import TesseraCore

/// Reads rectangles of one level of a TIFF or BigTIFF file with libtiff, decoding only the tiles (or strips)
/// each rectangle touches.
///
/// Handles tiled and striped directories; 8- and 16-bit unsigned samples; gray, gray+alpha, RGB, RGBA (alpha
/// dropped, not composited, like the PNG reader), MinIsWhite (inverted to MinIsBlack), JPEG YCbCr (converted
/// to RGB by libtiff) and every codec this libtiff build decodes. Levels: see `TIFFStructure`.
///
/// Thread-safe: each read borrows one of up to `maxHandles` libtiff handles (opened on demand), and decoded
/// tiles go through a shared LRU cache bounded by `cacheBytes`.
package final class TIFFRegionSource: RegionSource, @unchecked Sendable {
    package let name: String
    package let width: Int
    package let height: Int
    package let channels: Int
    package let bitDepth: Int
    /// The image of the file this source reads (1-based, `TIFFImages`) and how many it holds.
    package let image: Int
    package let imageCount: Int
    /// The level this source reads (0: full resolution).
    package let level: Int
    /// Every level of the image.
    package let levels: [SlideLevel]
    /// What a user should know about what is mapped (`TIFFStructure.notes`).
    package let notes: [String]

    let layout: TIFFLayout
    private let fileSize: UInt64
    private let handles: HandlePool<TIFFHandle>
    private let cache: TileCache

    /// The default decoded-tile cache: 32 MiB (42 RGB tiles of 512², 170 of 256²).
    package static let defaultCacheBytes = 32 << 20

    /// Opens level `level` of image `image` (1 when nil) of `path`.
    package convenience init(
        path: String, image: Int? = nil, level: Int = 0, cacheBytes: Int = defaultCacheBytes,
        maxHandles: Int = ProcessInfo.processInfo.activeProcessorCount
    ) throws {
        try self.init(
            path: path, image: image, level: level, mpp: nil, cacheBytes: cacheBytes, maxHandles: maxHandles)
    }

    /// Opens the level whose µm/px is within `mppTolerance` (relative) of `mpp`, the nearest if several.
    package convenience init(
        path: String, mpp: Double, mppTolerance: Double = 0.2,
        cacheBytes: Int = defaultCacheBytes,
        maxHandles: Int = ProcessInfo.processInfo.activeProcessorCount
    ) throws {
        try self.init(
            path: path, level: nil, mpp: mpp, mppTolerance: mppTolerance, cacheBytes: cacheBytes,
            maxHandles: maxHandles)
    }

    /// - Parameter image: the image of a multi-image file (1-based; nil: image 1, and the notes say
    ///   when there are others).
    /// - Parameter notes: notes to give before the file's own (`openRegionSource`'s fallback from OpenSlide).
    init(
        path: String, image: Int? = nil, level: Int?, mpp: Double?, mppTolerance: Double = 0.2, cacheBytes: Int,
        maxHandles: Int, notes extraNotes: [String] = []
    )
        throws
    {
        let first = try Self.openHandle(path: path)
        let structure = try TIFFStructure(path: path, handle: first, image: image)
        self.image = structure.image
        imageCount = structure.imageCount
        levels = structure.levels.map(\.info)
        notes = extraNotes + structure.notes
        let chosen: Int
        do {
            chosen = try LevelChoice.choose(
                levels: levels, level: level, mpp: mpp, tolerance: mppTolerance,
                path: path)
        } catch let error as SlideError {
            // Levels and µm/px a truncated copy lost look like the file's own (user audit).
            throw error.inImage(structure.image).adding(
                structure.damage.first.map { " (the file looks damaged: \($0))" } ?? "")
        }
        let location = structure.levels[chosen].location
        let info = try first.select(location, level: chosen)
        // A level none of whose tiles holds data is refused now (whole-slide audit 35 F9: a 10⁶ × 10⁶ header with
        // every byte count 0 was planned as 2.4 M tasks that each failed, with 14 000 log lines). The first tile
        // with data ends the scan.
        if info.tiled != 0, info.chunk_count > 0,
            (0..<Int(info.chunk_count)).allSatisfy({ first.chunkLocation($0)?.byteCount == 0 })
        {
            throw SlideError(
                .corruptFile, path: path, image: structure.image, level: chosen,
                detail: "none of the level's \(info.chunk_count) tiles holds any data (every byte count is 0): there "
                    + "is nothing to map")
        }
        let number = structure.image
        name = path
        self.level = chosen
        layout = structure.levels[chosen].layout
        width = layout.width
        height = layout.height
        channels = layout.channels
        bitDepth = layout.bytesPerSample * 8
        fileSize = structure.fileSize
        cache = TileCache(capacity: cacheBytes)
        handles = HandlePool(limit: maxHandles, first: first) {
            let handle = try Self.openHandle(path: path)
            do {
                _ = try handle.select(location, level: chosen)
            } catch let error as SlideError {
                throw error.inImage(number)
            }
            return handle
        }
    }

    private static func openHandle(path: String) throws -> TIFFHandle {
        switch try FileSniffer.kind(path) {
        case .tiff: break
        case .png: throw SlideError(.notTIFF, path: path, detail: "a PNG file, not a TIFF")
        case .other: throw SlideError(.notTIFF, path: path, detail: "no TIFF or BigTIFF header")
        }
        return try TIFFHandle(path: path)
    }

    /// Bytes of decoded tiles held in the cache now.
    package var cachedBytes: Int { cache.byteCount }

    package func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        guard Self.contains(rect, height: height, width: width) else {
            throw SlideError(
                .invalidArgument, path: name, image: image, level: level,
                detail: "region \(rect) is not inside the \(width)×\(height) image")
        }
        let count = rect.height * rect.width * channels
        guard !rect.isEmpty else {
            return PixelRegion(height: rect.height, width: rect.width, channels: channels, samples: [])
        }
        let rows = (rect.y / layout.chunkHeight)...((rect.y + rect.height - 1) / layout.chunkHeight)
        let columns = (rect.x / layout.chunkWidth)...((rect.x + rect.width - 1) / layout.chunkWidth)
        // Not zero-filled first: the tiles the rectangle touches cover every sample, and a failure throws.
        // Planar files: one tile per delivered channel (an alpha plane is never decoded).
        let planes = layout.planar ? channels : 1
        let samples = try [Float](unsafeUninitializedCapacity: count) { output, initialized in
            for row in rows {
                for column in columns {
                    for plane in 0..<planes {
                        let index = row * layout.chunksAcross + column + plane * layout.planeChunks
                        let chunk = try decodedChunk(index)
                        copy(chunk: chunk, index: index, plane: plane, into: output, rect: rect)
                    }
                }
            }
            initialized = count
        }
        return PixelRegion(height: rect.height, width: rect.width, channels: channels, samples: samples)
    }

    /// The decoded bytes of tile/strip `index`, from the cache or libtiff.
    private func decodedChunk(_ index: Int) throws -> [UInt8] {
        try cache.value(for: index) { try handles.withHandle { handle in try decode(index, with: handle) } }
    }

    private func decode(_ index: Int, with handle: TIFFHandle) throws -> [UInt8] {
        let rect = layout.chunkRect(index)
        func fail(_ kind: SlideError.Kind, _ detail: String) -> SlideError {
            SlideError(
                kind, path: name, image: image, level: level,
                tile: SlideError.TileLocation(index: index, rect: rect, isStrip: !layout.tiled), detail: detail)
        }
        if let (kind, detail) = handle.storedBytesProblem(index, fileSize: fileSize) { throw fail(kind, detail) }
        guard let (offset, _) = handle.chunkLocation(index) else {
            throw fail(.corruptFile, "the directory has no offset or byte count for it")
        }
        // A strip's decoded size depends on its rows (the last strip is shorter); a tile is always full size.
        let needed =
            layout.tiled
            ? layout.chunkBytes
            : rect.height * layout.width * layout.chunkSamplesPerPixel * layout.bytesPerSample
        // Uncompressed data is `needed` bytes whatever the byte count says: libtiff reads that many,
        // so a file cut inside it fails as a "read error", which is the file's damage, not the storage's.
        if layout.compression == 1, UInt64(needed) > fileSize - offset {
            throw fail(
                .truncated,
                "its \(needed) uncompressed bytes at byte \(offset) run past the end of the file (\(fileSize) bytes)")
        }
        var bytes = [UInt8](repeating: 0, count: layout.chunkBytes)
        var message = ""
        guard let got = bytes.withUnsafeMutableBytes({ handle.readChunk(index, into: $0, failure: &message) }) else {
            // libtiff's "Read error …" / "Seek error …": the bytes did not arrive (the storage), not bad data.
            if message.contains("Read error") || message.contains("Seek error") {
                throw fail(.readFailed, "libtiff could not read it: \(message)")
            }
            throw fail(.corruptTile, "libtiff could not decode it: \(message)")
        }
        guard got >= needed else { throw fail(.corruptTile, "libtiff decoded \(got) bytes, \(needed) expected") }
        return bytes
    }

    /// Copies the part of chunk `index` inside `rect` into `output` (rect-relative, HWC Float): all delivered
    /// channels of an interleaved chunk, or channel `plane` of a planar one.
    private func copy(
        chunk: [UInt8], index: Int, plane: Int, into output: UnsafeMutableBufferPointer<Float>,
        rect: PixelRect
    ) {
        let chunkRect = layout.chunkRect(index)
        let y0 = max(rect.y, chunkRect.y), y1 = min(rect.y + rect.height, chunkRect.y + chunkRect.height)
        let x0 = max(rect.x, chunkRect.x), x1 = min(rect.x + rect.width, chunkRect.x + chunkRect.width)
        guard y0 < y1, x0 < x1 else { return }
        let step = Step(source: layout.chunkSamplesPerPixel, output: channels, samples: layout.planar ? 1 : channels)
        let chunkRowSamples = layout.chunkWidth * step.source
        let outStride = rect.width * channels
        let count = x1 - x0
        func rows<T: BinaryInteger>(_ source: UnsafeBufferPointer<T>, flip: Float) {
            for y in y0..<y1 {
                let src = (y - chunkRect.y) * chunkRowSamples + (x0 - chunkRect.x) * step.source
                let dst = (y - rect.y) * outStride + (x0 - rect.x) * channels + plane
                Self.copyRow(from: source, at: src, to: output, at: dst, step: step, count: count, flip: flip)
            }
        }
        chunk.withUnsafeBytes { raw in
            if layout.bytesPerSample == 1 {
                rows(raw.bindMemory(to: UInt8.self), flip: layout.invert ? 255 : -1)
            } else {
                rows(raw.bindMemory(to: UInt16.self), flip: layout.invert ? 65535 : -1)
            }
        }
    }

    /// Samples per pixel in a decoded chunk and in the output, and how many of them a pixel copies.
    private struct Step {
        let source: Int
        let output: Int
        let samples: Int
    }

    /// Copies `count` pixels, `step.samples` samples each; `flip` ≥ 0 inverts them (MinIsWhite gray).
    @inline(__always)
    private static func copyRow<T: BinaryInteger>(
        from source: UnsafeBufferPointer<T>, at src: Int,
        to output: UnsafeMutableBufferPointer<Float>, at dst: Int,
        step: Step, count: Int, flip: Float
    ) {
        var s = src, d = dst
        if flip >= 0 {
            for _ in 0..<count {
                output[d] = flip - Float(source[s])
                s += step.source
                d += step.output
            }
        } else if step.source == step.samples && step.output == step.samples {
            for i in 0..<(count * step.samples) { output[d + i] = Float(source[s + i]) }
        } else {
            for _ in 0..<count {
                for c in 0..<step.samples { output[d + c] = Float(source[s + c]) }
                s += step.source
                d += step.output
            }
        }
    }

    /// Whether `rect` lies inside a `height × width` image (written so that no sum can overflow).
    static func contains(_ rect: PixelRect, height: Int, width: Int) -> Bool {
        rect.y >= 0 && rect.x >= 0 && rect.height >= 0 && rect.width >= 0 && rect.y <= height && rect.x <= width
            && rect.height <= height - rect.y && rect.width <= width - rect.x
    }

}
