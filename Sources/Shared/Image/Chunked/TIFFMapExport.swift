import CTIFF
import CTIFFIO
import Foundation
import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A finished store as a pyramidal tiled BigTIFF: one directory per store
/// level, in order, each after the first marked NewSubfileType = reduced image
/// (the layout OpenSlide's generic-tiff reader follows; SubIFDs it ignores).
/// The classes are planar-separate samples of one min-is-black image
/// (SamplesPerPixel = classes, the extra ones "unspecified"), so tifffile reads
/// the file as one series of shape (classes, H, W) — (H, W) for one class — with
/// every level as `series[0].levels[k]`; a page per class would instead make
/// tifffile see one series per class and the pyramid across them. Samples keep the
/// store's dtype, or are quantised from a float32 store's exact values to the dtype
/// asked for (what `run --outputs tiff` without the zarr writes), deflate-compressed (zlib level `zipLevel`, 1 by default: float
/// samples gain little from higher levels). Tiles are `tileSize`² (less on a level
/// smaller than that, strips for a map under 16 pixels on a side; edge tiles zero-padded), written row by row from the chunks, a small batch at a time
/// compressed on all cores: memory is a few chunks and a batch of tiles, whatever
/// the image size. (A chunk taller than the tile is decoded once per tile row it
/// spans.) OpenSlide (tested: uint8) sees every level, but renders the pixels of
/// one-class maps only (gray); multi-class and float maps are for tifffile, QuPath
/// and other Bio-Formats-based readers. No OME-XML is written: level 0's ImageDescription
/// is a JSON object `{"tessera": …}` (`StoreMetadata.tiffDescription`) naming the planes' classes,
/// how samples read as probabilities, and the tiles not computed.
package enum TIFFMapExport {
    /// Writes `store` to `path` atomically (temporary name in the same folder,
    /// fsync, rename). Throws `.notFinished` unless the store is finished or
    /// `allowUnfinished` (then unwritten tiles export as the fill value). `dtype`: the
    /// samples' type, when not the store's (which must then be float32).
    package static func write(
        store: MapStore, to path: String, dtype: MapDType? = nil, tileSize: Int = 256, zipLevel: Int = 1,
        allowUnfinished: Bool = false
    ) throws {
        let dtype = dtype ?? store.layout.dtype
        guard dtype == store.layout.dtype || store.layout.dtype == .float32 else {
            throw MapStoreError(
                .invalidArgument, path: path,
                detail: "a \(store.layout.dtype.rawValue) map cannot be written as \(dtype.rawValue) samples: only "
                    + "a float32 map's exact values are quantised")
        }
        guard tileSize > 0, tileSize % 16 == 0 else {
            throw MapStoreError(
                .invalidArgument, path: path,
                detail: "TIFF tile size \(tileSize) is not a positive multiple of 16")
        }
        guard (0...9).contains(zipLevel) else {
            throw MapStoreError(.invalidArgument, path: path, detail: "deflate level \(zipLevel) is not 0…9")
        }
        guard allowUnfinished || store.isFinished else {
            throw MapStoreError(.notFinished, path: store.path, detail: "finish() has not completed; nothing exported")
        }
        let (directory, name) = AtomicFile.split(path)
        let temporary = "\(directory)/.\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let errors = UnsafeMutablePointer<ttiff_errors>.allocate(capacity: 1)
        errors.initialize(to: ttiff_errors())
        defer { errors.deallocate() }
        guard let tif = ttiff_open(temporary, "w8", errors) else {
            throw MapStoreError(.tiff, path: path, detail: message(errors))
        }
        let levels = levelCount(store.layout)
        let description = (try? FileIO.read("\(store.path)/.zattrs")).flatMap { $0 }.flatMap {
            StoreMetadata.tiffDescription(zattrs: $0, layout: store.layout, dtype: dtype, levels: levels)
        }
        do {
            defer { TIFFClose(tif) }
            for level in 0..<levels {
                try writeLevel(
                    store: store, level: level, dtype: dtype, description: level == 0 ? description : nil, tif: tif,
                    tileSize: tileSize, zipLevel: zipLevel, errors: errors, path: path)
            }
        } catch let error as MapStoreError {
            // libtiff says "Write error at scanline …", not why: the failed write's errno when it is one a write
            // gives (audit 55 F10: a file-size limit or a quota lost its reason), and a full disk checked here.
            let code = errno
            let cause = [EFBIG, EDQUOT, ENOSPC, EIO].contains(code) ? errnoText(code) : nil
            let full = diskFullNote(directory)
            unlink(temporary)
            guard let note = full ?? cause else { throw error }
            throw MapStoreError(.io, path: path, detail: "\(note) (\(error.detail))")
        } catch {
            unlink(temporary)
            throw error
        }
        // TIFFClose flushed the last directory; a failure there shows up in the handler.
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        let synced = fd >= 0 && fsync(fd) == 0
        if fd >= 0 { close(fd) }
        guard errors.pointee.errors == 0, synced, rename(temporary, path) == 0 else {
            var detail = errors.pointee.errors > 0 ? message(errors) : errnoText()
            if let full = diskFullNote(directory) { detail = "\(full) (\(detail))" }
            unlink(temporary)
            throw MapStoreError(errors.pointee.errors > 0 ? .tiff : .io, path: path, detail: detail)
        }
        AtomicFile.syncDirectory(directory)
    }

    /// "No space left on device …" when the file system holding `directory` has under
    /// 1 MiB free (checked after a failed write, before the partial file is removed).
    static func diskFullNote(_ directory: String) -> String? {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else { return nil }
        let free = UInt64(s.f_bavail) * UInt64(s.f_frsize)
        guard free < 1 << 20 else { return nil }
        return "No space left on device: the disk holding \(directory) has \(free) bytes free"
    }

    /// The levels exported: the store's, up to the first that is not smaller than the one before on
    /// both sides (tifffile then reads it as another series: a 1-pixel-tall map's levels were four
    /// series, output audit 39 F5) or is under 16 pixels on a side (less than one TIFF tile, F4).
    package static func levelCount(_ layout: MapLayout) -> Int {
        var count = 1
        while count < layout.levels {
            let size = layout.levelSize(count), before = layout.levelSize(count - 1)
            guard size.h < before.h, size.w < before.w, min(size.h, size.w) >= 16 else { break }
            count += 1
        }
        return count
    }

    /// A level's TIFF tile: `tileSize`, or less on a level smaller than it (a multiple of 16, at
    /// least 16). OpenSlide (libtiff's RGBA reader, 4.5) returns wrong pixels for a tile wider or
    /// taller than its level, which every pyramid's last level was (output audit 39 F4).
    static func tileSide(_ tileSize: Int, level size: Size2) -> Int {
        max(16, min(tileSize, min(size.h, size.w) / 16 * 16))
    }

    private static func writeLevel(
        store: MapStore, level: Int, dtype: MapDType, description: String?, tif: OpaquePointer, tileSize: Int,
        zipLevel: Int, errors: UnsafeMutablePointer<ttiff_errors>, path: String
    ) throws {
        let layout = store.layout, size = layout.levelSize(level), stored = layout.dtype
        // A map under 16 pixels on a side is written in strips: no TIFF tile fits in it, and OpenSlide misread
        // such tiles (verification audit 40 N4); it then refuses the file (generic TIFF is tiled), tifffile reads it.
        let strips = min(size.h, size.w) < 16
        let tileSize = strips ? 0 : tileSide(tileSize, level: size)
        let rowsPerStrip = max(1, min(size.h, (1 << 20) / max(1, size.w * dtype.size)))
        let format = UInt16(dtype.isFloat ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT)
        func setDirectory(_ text: UnsafePointer<CChar>?) -> Int32 {
            ttiff_set_directory(
                tif, UInt32(size.w), UInt32(size.h), UInt32(tileSize), UInt32(rowsPerStrip), UInt16(layout.classes),
                UInt16(dtype.size * 8), format, level > 0 ? 1 : 0, Int32(zipLevel), "Tessera",
                text, layout.micronsPerPixel.map { 1e4 / ($0 * Double(1 << level)) } ?? 0,
                layout.micronsPerPixelY.map { 1e4 / ($0 * Double(1 << level)) } ?? 0)
        }
        let set = description.map { $0.withCString { setDirectory($0) } } ?? setDirectory(nil)
        guard set == 1 else {
            throw MapStoreError(.tiff, path: path, detail: "level \(level): cannot set the tags: \(message(errors))")
        }
        if strips {
            try writeStrips(
                store: store, level: level, dtype: dtype, rows: rowsPerStrip, tif: tif, zipLevel: zipLevel,
                errors: errors, path: path)
            return
        }
        // The TIFF's tiles are written in blocks of k × k that fit in a stored chunk (a map tile, up to a few
        // thousand pixels a side), so a block needs at most 2 × 2 chunks and each chunk is decoded a few times at
        // most. Row by row across the map, a cache of chunks counted, not sized, held 34 chunks of 47 MiB on 2 cores
        // and more on more (memory audit 50 F1: 1.6 GB for a 16 000² float32 map). Its bytes are bounded now.
        let side = layout.storedChunkSide(level)
        let k = max(1, side / tileSize)
        let span = (tileSize + side - 1) / side + 1
        let chunkBytes = max(1, layout.classes * side * side * stored.size)
        let needed = k > 1 ? 4 : span * span
        let cache = ChunkCache(capacity: max(needed, min(span * span * batch + span, (64 << 20) / chunkBytes)))
        let block = k * tileSize
        var order: [PixelRect] = []
        for by in stride(from: 0, to: size.h, by: block) {
            for bx in stride(from: 0, to: size.w, by: block) {
                for y in stride(from: by, to: min(by + block, size.h), by: tileSize) {
                    for x in stride(from: bx, to: min(bx + block, size.w), by: tileSize) {
                        order.append(
                            PixelRect(y: y, x: x, height: min(tileSize, size.h - y), width: min(tileSize, size.w - x)))
                    }
                }
            }
        }
        for first in stride(from: 0, to: order.count, by: batch) {
            // Read a few tiles in order (the cache is single-threaded), deflate their planes on
            // all cores (libtiff would on one), then write them as raw tiles at their places.
            let rects = Array(order[first..<min(first + batch, order.count)])
            let regions = try rects.map { try store.regionBytes(level: level, rect: $0, cache: cache) }
            let classes = layout.classes
            var planes = [[UInt8]](repeating: [], count: rects.count * classes)
            planes.withUnsafeMutableBufferPointer { out in
                DispatchQueue.concurrentPerform(iterations: out.count) { i in
                    let tile = paddedTile(
                        regions[i / classes], rect: rects[i / classes], plane: i % classes,
                        tileSize: tileSize, sample: stored.size)
                    let samples = dtype == stored ? tile : converted(tile, from: stored, to: dtype)
                    out[i] = samples.withUnsafeBytes { ChunkCodec.compress($0, level: Int32(zipLevel)) }
                }
            }
            for (i, plane) in planes.enumerated() {
                let rect = rects[i / classes], c = i % classes
                let index = TIFFComputeTile(tif, UInt32(rect.x), UInt32(rect.y), 0, UInt16(c))
                let written = plane.withUnsafeBytes { raw in
                    TIFFWriteRawTile(
                        tif, index, UnsafeMutableRawPointer(mutating: raw.baseAddress),
                        tmsize_t(raw.count))
                }
                guard written == plane.count else {
                    throw MapStoreError(
                        .tiff, path: path,
                        detail: "level \(level), tile at y \(rect.y) x \(rect.x), class \(c): "
                            + message(errors))
                }
            }
        }
        guard TIFFWriteDirectory(tif) == 1 else {
            throw MapStoreError(
                .tiff, path: path,
                detail: "level \(level): cannot write the directory: \(message(errors))")
        }
    }

    /// A level as strips of `rows` rows (the last may be shorter), one per class plane each, after the tags.
    private static func writeStrips(
        store: MapStore, level: Int, dtype: MapDType, rows: Int, tif: OpaquePointer, zipLevel: Int,
        errors: UnsafeMutablePointer<ttiff_errors>, path: String
    ) throws {
        let layout = store.layout, size = layout.levelSize(level), stored = layout.dtype
        let cache = ChunkCache(capacity: (size.w + layout.storedChunkSide(level) - 1) / layout.storedChunkSide(level))
        for y in stride(from: 0, to: size.h, by: rows) {
            let rect = PixelRect(y: y, x: 0, height: min(rows, size.h - y), width: size.w)
            let region = try store.regionBytes(level: level, rect: rect, cache: cache)
            let planeBytes = rect.height * rect.width * stored.size
            for c in 0..<layout.classes {
                let plane = Array(region[(c * planeBytes)..<((c + 1) * planeBytes)])
                let samples = dtype == stored ? plane : converted(plane, from: stored, to: dtype)
                let packed = samples.withUnsafeBytes { ChunkCodec.compress($0, level: Int32(zipLevel)) }
                let index = TIFFComputeStrip(tif, UInt32(y), UInt16(c))
                let written = packed.withUnsafeBytes { raw in
                    TIFFWriteRawStrip(
                        tif, index, UnsafeMutableRawPointer(mutating: raw.baseAddress), tmsize_t(raw.count))
                }
                guard written == packed.count else {
                    throw MapStoreError(
                        .tiff, path: path, detail: "level \(level), strip at y \(y), class \(c): " + message(errors))
                }
            }
        }
        guard TIFFWriteDirectory(tif) == 1 else {
            throw MapStoreError(
                .tiff, path: path, detail: "level \(level): cannot write the directory: \(message(errors))")
        }
    }

    /// One class plane of a region as a full tileSize² tile (zero-padded at the image edge).
    private static func paddedTile(
        _ region: [UInt8], rect: PixelRect, plane c: Int, tileSize: Int,
        sample: Int
    ) -> [UInt8] {
        var tile = [UInt8](repeating: 0, count: tileSize * tileSize * sample)
        tile.withUnsafeMutableBytes { dst in
            region.withUnsafeBytes { src in
                for row in 0..<rect.height {
                    let from = ((c * rect.height + row) * rect.width) * sample
                    (dst.baseAddress! + row * tileSize * sample)
                        .copyMemory(from: src.baseAddress! + from, byteCount: rect.width * sample)
                }
            }
        }
        return tile
    }

    /// `samples` (of type `from`) as `to`'s samples, quantised as the store's writes would.
    private static func converted(_ samples: [UInt8], from: MapDType, to: MapDType) -> [UInt8] {
        let count = samples.count / from.size
        var values = [Float](repeating: 0, count: count)
        samples.withUnsafeBytes { raw in
            values.withUnsafeMutableBufferPointer { from.decode(raw.baseAddress!, count: count, into: $0.baseAddress!) }
        }
        return values.withUnsafeBufferPointer { to.encode(values: $0) }
    }

    /// Tiles read, then compressed in parallel, at a time: enough to keep every core busy.
    private static var batch: Int { 4 * max(1, ProcessInfo.processInfo.activeProcessorCount) }

    private static func message(_ errors: UnsafeMutablePointer<ttiff_errors>) -> String {
        withUnsafeBytes(of: errors.pointee.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
