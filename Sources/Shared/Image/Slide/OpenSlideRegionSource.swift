import COpenSlide
import Foundation
import TesseraCore

/// Reads rectangles of one level of a whole-slide image through OpenSlide (Aperio SVS, Hamamatsu NDPI, MIRAX,
/// Leica SCN, …). Always 3 channels of 8 bits.
///
/// OpenSlide's traps, handled here:
/// - `openslide_read_region` takes level-0 coordinates: a level-`L` rectangle starts at (x·downsample, y·downsample).
///   When a level's downsample is not an integer OpenSlide resamples by the fractional remainder (its own
///   behaviour, as in every OpenSlide client).
/// - It returns zeros, with no error, outside the level and for an invalid level: the level and the rectangle
///   are checked here first.
/// - It returns premultiplied ARGB. α = 255 (every pixel of ordinary slides) is copied exactly. 0 < α < 255
///   (the blended edges of some formats' scan areas) is un-premultiplied: c · 255 / α, rounded, at most 255.
///   α = 0 means no scanned data there (gaps between MIRAX or NDPI scan areas): those pixels get the slide's
///   `openslide.background-color`, or white when it declares none — background, as the glass would look.
/// - Errors are sticky: after one, every read returns zeros. `openslide_get_error` is checked after every read.
///   A failed read reopens the slide and retries once alone, so that one bad tile neither poisons later reads
///   nor blames a read on another thread that happened to share the handle; a second failure throws, naming
///   the file, level and rectangle.
///
/// Thread-safe: reads share one handle under a reader lock (OpenSlide is thread-safe and caches decoded tiles
/// per handle); error recovery takes the writer lock.
package final class OpenSlideRegionSource: RegionSource, @unchecked Sendable {
    package let name: String
    package let width: Int
    package let height: Int
    package let channels = 3
    package let bitDepth = 8
    /// OpenSlide reads one image of a file.
    package let image = 1
    package let imageCount = 1
    /// The level this source reads.
    package let level: Int
    package let levels: [SlideLevel]
    /// OpenSlide's vendor name ("aperio", "hamamatsu", …).
    package let vendor: String
    /// The colour given to pixels with no scanned data (α = 0).
    package let background: (red: UInt8, green: UInt8, blue: UInt8)
    /// What a user should know about what is mapped: a TIFF-based slide cut short (`TIFFDirectoryChain`).
    package let notes: [String]

    private let downsample: Double
    /// The tiles of this level that OpenSlide is never asked for (`UnreadableTiles`), nil when none.
    private let unreadable: UnreadableTiles?
    private let lock = ReadWriteLock()
    private var handle: OpenSlideHandle

    package convenience init(path: String, level: Int = 0) throws {
        try self.init(path: path, level: level, mpp: nil)
    }

    /// Opens the level whose µm/px is within `mppTolerance` (relative) of `mpp`, the nearest if several.
    package convenience init(path: String, mpp: Double, mppTolerance: Double = 0.2) throws {
        try self.init(path: path, level: nil, mpp: mpp, mppTolerance: mppTolerance)
    }

    /// - Parameter opened: the slide already opened (by `openRegionSource`), or nil to open it here.
    init(path: String, level: Int?, mpp: Double?, mppTolerance: Double = 0.2, opened: OpenSlideHandle? = nil) throws {
        _ = try FileSniffer.fileSize(path)
        let handle = try opened ?? OpenSlideHandle(path: path)
        levels = handle.levels()
        let chosen = try LevelChoice.choose(
            levels: levels, level: level, mpp: mpp, tolerance: mppTolerance,
            path: path)
        name = path
        self.level = chosen
        self.handle = handle
        width = levels[chosen].width
        height = levels[chosen].height
        downsample = levels[chosen].downsample
        vendor = openslide_detect_vendor(path).map { String(cString: $0) } ?? "unknown"
        background = Self.parseColor(handle.property("openslide.background-color")) ?? (255, 255, 255)
        notes =
            (TIFFDirectoryChain.cutShortNote(path: path).map { [$0] } ?? [])
            + Self.tiffDamageNotes(path, vendor: vendor)
            + (SlideLevel.nonSquareNote(
                x: handle.property("openslide.mpp-x").flatMap(Double.init),
                y: handle.property("openslide.mpp-y").flatMap(Double.init)
            ).map { [$0] } ?? [])
        unreadable = UnreadableTiles(path, vendor: vendor, width: width, height: height)
        guard width > 0, height > 0, downsample > 0, downsample.isFinite else {
            throw SlideError(
                .openSlide, path: path, level: chosen,
                detail: "OpenSlide reports an empty level (\(width)×\(height), downsample \(downsample))")
        }
    }

    /// The tiles of a TIFF-based slide's level whose stored bytes libtiff's directory shows unreadable
    /// (`TIFFHandle.storedBytesProblem`), found once when the level opens. OpenSlide must not be asked
    /// for them: it allocates what a tile's byte count says before reading (a count of 4 GiB aborted the
    /// process under a memory limit, `--corrupt-tiles skip` or not) and reads a tile of 0 bytes as
    /// transparent, mapped as background without a word (hostile-input audit 27). A region over one
    /// fails as a corrupt tile instead, which `--corrupt-tiles skip` maps around.
    struct UnreadableTiles {
        let tileWidth: Int, tileHeight: Int, across: Int, width: Int, height: Int
        let problems: [Int: (kind: SlideError.Kind, detail: String)]

        /// Nil when the slide is not plain TIFF, no tiled level of its pyramid is `width × height`, or
        /// every tile of it looks sound.
        init?(_ path: String, vendor: String, width: Int, height: Int) {
            guard OpenSlideRegionSource.tiffVendors.contains(vendor), let handle = try? TIFFHandle(path: path),
                let structure = try? TIFFStructure(path: path, handle: handle),
                let level = structure.levels.first(where: {
                    $0.layout.tiled && $0.layout.width == width && $0.layout.height == height
                }),
                let info = try? handle.select(level.location, level: level.info.index), info.tiled != 0
            else { return nil }
            var problems: [Int: (SlideError.Kind, String)] = [:]
            for index in 0..<Int(info.chunk_count) {
                if let problem = handle.storedBytesProblem(index, fileSize: structure.fileSize) {
                    problems[index] = problem
                }
            }
            guard !problems.isEmpty else { return nil }
            self.problems = problems
            (tileWidth, tileHeight, across) = (
                level.layout.chunkWidth, level.layout.chunkHeight, level.layout.chunksAcross
            )
            (self.width, self.height) = (width, height)
        }

        /// The first unreadable tile `rect` covers, with why.
        func first(in rect: PixelRect) -> (SlideError.TileLocation, SlideError.Kind, String)? {
            for ty in (rect.y / tileHeight)...((rect.y + rect.height - 1) / tileHeight) {
                for tx in (rect.x / tileWidth)...((rect.x + rect.width - 1) / tileWidth) {
                    let index = ty * across + tx
                    guard let (kind, detail) = problems[index] else { continue }
                    let (y, x) = (ty * tileHeight, tx * tileWidth)
                    let tile = PixelRect(
                        y: y, x: x, height: min(tileHeight, height - y), width: min(tileWidth, width - x))
                    return (
                        SlideError.TileLocation(index: index, rect: tile, isStrip: false), kind,
                        detail + " (found in the file's TIFF directory; not read)"
                    )
                }
            }
            return nil
        }
    }

    /// Vendors whose files are plain TIFF, which libtiff reads as OpenSlide does.
    static let tiffVendors: Set<String> = ["aperio", "generic-tiff", "leica", "philips", "trestle", "ventana"]

    /// The damage libtiff sees in a TIFF-based slide (offsets it ignored, tiles past the end, lost
    /// levels): OpenSlide returns such tiles as transparent, mapped as background without a word
    /// (hostile-input audit: a mutated SVS gave a map 98 % invented background, rc 0).
    static func tiffDamageNotes(_ path: String, vendor: String) -> [String] {
        guard tiffVendors.contains(vendor), let handle = try? TIFFHandle(path: path),
            let structure = try? TIFFStructure(path: path, handle: handle)
        else { return [] }
        let cut = TIFFDirectoryChain.cutShortNote(path: path)
        return structure.notes.filter { ($0.contains("damaged") || $0.contains("truncated")) && $0 != cut }
    }

    package func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        guard Self.contains(rect, height: height, width: width) else {
            throw SlideError(
                .invalidArgument, path: name, level: level,
                detail: "region \(rect) is not inside the \(width)×\(height) level")
        }
        var pixels = [UInt32](repeating: 0, count: rect.height * rect.width)
        guard !rect.isEmpty else { return convert(pixels, rect) }
        if let (tile, kind, detail) = unreadable?.first(in: rect) {
            throw SlideError(kind, path: name, level: level, tile: tile, detail: detail)
        }
        let firstError = lock.reading { read(rect, into: &pixels, with: handle) }
        if let firstError {
            try lock.writing {
                // Reopen (this read or another one left the handle in its sticky error state), retry alone.
                if handle.error != nil { handle = try reopen(rect, firstError) }
                if let error = read(rect, into: &pixels, with: handle) {
                    handle = try reopen(rect, error)
                    // The slide reopens but this region still fails: its data is damaged.
                    throw SlideError(
                        .corruptTile, path: name, level: level,
                        detail: "reading \(rect) (level-0 origin \(origin(rect))): \(error)")
                }
            }
        }
        return convert(pixels, rect)
    }

    /// Reads `rect` into `pixels`; returns OpenSlide's error, if it has one afterwards.
    private func read(_ rect: PixelRect, into pixels: inout [UInt32], with handle: OpenSlideHandle) -> String? {
        let (x0, y0) = origin(rect)
        pixels.withUnsafeMutableBufferPointer { buffer in
            openslide_read_region(
                handle.raw, buffer.baseAddress, x0, y0, Int32(level), Int64(rect.width),
                Int64(rect.height))
        }
        return handle.error
    }

    private func reopen(_ rect: PixelRect, _ error: String) throws -> OpenSlideHandle {
        // A slide deleted or moved while it was read: said so (chaos audit: "OpenSlide does not recognise the
        // format" named the wrong cause).
        guard FileManager.default.fileExists(atPath: name) else {
            throw SlideError(
                .notFound, path: name, level: level,
                detail: "reading \(rect) failed (\(error)): the file is gone (deleted or moved while it was read)")
        }
        do {
            return try OpenSlideHandle(path: name)
        } catch {
            throw SlideError(
                .openSlide, path: name, level: level,
                detail: "reading \(rect) failed (\(error)) and the slide cannot be reopened")
        }
    }

    /// The level-0 coordinates of `rect`'s origin.
    private func origin(_ rect: PixelRect) -> (Int64, Int64) {
        (Int64((Double(rect.x) * downsample).rounded()), Int64((Double(rect.y) * downsample).rounded()))
    }

    /// Premultiplied 0xAARRGGBB to RGB Float samples (see the type's documentation for α < 255).
    private func convert(_ pixels: [UInt32], _ rect: PixelRect) -> PixelRegion {
        var samples = [Float](repeating: 0, count: pixels.count * 3)
        let background = (Float(self.background.red), Float(self.background.green), Float(self.background.blue))
        samples.withUnsafeMutableBufferPointer { out in
            for (i, pixel) in pixels.enumerated() {
                let alpha = pixel >> 24
                let red = (pixel >> 16) & 0xFF, green = (pixel >> 8) & 0xFF, blue = pixel & 0xFF
                if alpha == 255 {
                    out[3 * i] = Float(red)
                    out[3 * i + 1] = Float(green)
                    out[3 * i + 2] = Float(blue)
                } else if alpha == 0 {
                    out[3 * i] = background.0
                    out[3 * i + 1] = background.1
                    out[3 * i + 2] = background.2
                } else {
                    out[3 * i] = Self.unpremultiply(red, alpha)
                    out[3 * i + 1] = Self.unpremultiply(green, alpha)
                    out[3 * i + 2] = Self.unpremultiply(blue, alpha)
                }
            }
        }
        return PixelRegion(height: rect.height, width: rect.width, channels: 3, samples: samples)
    }

    private static func unpremultiply(_ value: UInt32, _ alpha: UInt32) -> Float {
        Float(min(255, (value * 255 + alpha / 2) / alpha))
    }

    /// "RRGGBB" (OpenSlide's background-color property).
    static func parseColor(_ text: String?) -> (UInt8, UInt8, UInt8)? {
        guard let text, text.count == 6, let value = UInt32(text, radix: 16) else { return nil }
        return (UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF))
    }

    /// Whether `rect` lies inside a `height × width` image (written so that no sum can overflow).
    static func contains(_ rect: PixelRect, height: Int, width: Int) -> Bool {
        rect.y >= 0 && rect.x >= 0 && rect.height >= 0 && rect.width >= 0 && rect.y <= height && rect.x <= width
            && rect.height <= height - rect.y && rect.width <= width - rect.x
    }

}
