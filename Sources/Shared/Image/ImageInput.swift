import Foundation
import TesseraCore

/// Opens any image Tessera maps as a region source: PNG (decoded into memory),
/// TIFF and BigTIFF (libtiff, tile by tile), and whole-slide formats OpenSlide
/// knows (SVS, NDPI, MRXS, SCN, …): the image of the file and the pyramid level asked for.
package enum ImageInput {
    /// An opened image and what was chosen.
    package struct Opened: Sendable {
        package let source: any RegionSource
        package let format: SlideFormat
        /// The image of the file mapped (from 1) and how many the file holds (`TIFFImages`; 1 for
        /// PNG and the files OpenSlide reads).
        package var image = 1
        package var imageCount = 1
        /// The pyramid level mapped (0 for PNG).
        package let level: Int
        /// Its microns per pixel, when the file says.
        package let mpp: Double?
        /// Its microns per pixel along y, when the file records a height that differs (`SlideLevel.mppY`).
        package var mppY: Double?
        /// Levels of the file (one for PNG).
        package let levelCount: Int
        /// Level 0's size and the level's downsample, for a level above 0.
        package var scale: LevelScale?
        /// What a user should know about what is mapped (a larger image elsewhere in the file…).
        package var notes: [String] {
            (source as? TIFFRegionSource)?.notes ?? (source as? OpenSlideRegionSource)?.notes
                ?? (source as? NamedImage)?.notes ?? (source as? RawPixelFile)?.notes ?? []
        }

        /// "level 1 of 3, 0.50 µm/px" (or "PNG"), after "image 2 of 3, " in a file of several images.
        package var levelDescription: String {
            ImageInput.levelDescription(
                format: format, image: image, imageCount: imageCount, level: level, levelCount: levelCount, mpp: mpp)
        }
    }

    static func levelDescription(
        format: SlideFormat, image: Int, imageCount: Int, level: Int, levelCount: Int, mpp: Double?
    ) -> String {
        if case .png = format { return "PNG" }
        return (imageCount > 1 ? "image \(image) of \(imageCount), " : "") + "level \(level) of \(levelCount)"
            + (mpp.map { String(format: ", %.3f µm/px", $0) } ?? ", µm/px unknown")
    }

    /// Opens `path`: image `image` of a multi-image TIFF (from 1; nil: image 1, and the notes
    /// say when there are others), at level `level`, or the level nearest `mpp` microns per pixel
    /// (within 20 %), or level 0. A PNG larger than `maxPixels` is refused before it is decoded.
    /// `rowsInOrder`: the caller reads the image top to bottom, a band at a time (the overlay), so a PNG that is
    /// not interlaced is decoded as the bands are read (`PNGRowSource`), never held whole; an interlaced one is
    /// decoded into a file of TMPDIR as `pngFolder` says.
    /// `pngFolder`: a PNG read a region at a time (a map's tiles) is decoded once, a band of rows at a time, into a
    /// file without a name in that folder (`decodedPNG`), not into memory.
    package static func open(
        path: String, image: Int? = nil, level: Int? = nil, mpp: Double? = nil,
        maxPixels: Int = PNGReader.defaultMaxPixels, rowsInOrder: Bool = false, pngFolder: String? = nil,
        memoryMaxPixels: Int? = nil
    ) throws -> Opened {
        let format = try SlideFormat.detect(path: path)
        if case .png = format {
            if let image, image != 1 { throw pngHasOneImage(path: path, image: image) }
            if let mpp, level == nil {
                throw SlideError(
                    .noLevelNearMPP(mpp), path: path,
                    detail: "a PNG records no microns per pixel: --mpp chooses a level of a slide")
            }
            // Level 0 is the PNG itself (a shared job names the level it planned).
            if let level, level != 0 {
                throw SlideError(
                    .noSuchLevel(level), path: path,
                    detail: "a PNG has one level: --level chooses a level of a slide")
            }
            if rowsInOrder, let rows = try PNGRowSource(path: path, maxPixels: maxPixels) {
                return Opened(source: rows, format: format, level: 0, mpp: nil, levelCount: 1)
            }
            var why: String?
            // (Read in order but interlaced: decoded into a file of TMPDIR, not held.)
            if let folder = pngFolder ?? (rowsInOrder ? FileManager.default.temporaryDirectory.path : nil) {
                switch try decodedPNG(path, folder: folder, maxPixels: maxPixels) {
                case .decoded(let raw): return Opened(source: raw, format: format, level: 0, mpp: nil, levelCount: 1)
                case .noRoom(let reason):
                    // In memory, `memoryMaxPixels` holds whatever was allowed on disk (a worker allows what its
                    // coordinator admitted, review 31 F9; not that much in memory).
                    let header = try PNGReader.header(path: path, maxPixels: maxPixels)
                    if let limit = memoryMaxPixels, header.width * header.height > limit {
                        throw ImageIOError(
                            .tooLarge, path: path,
                            detail: "\(reason), and held in memory its \(header.width)×\(header.height) pixels pass "
                                + "the limit of \(limit) for that: give TMPDIR a folder with room")
                    }
                    why = reason + ": it is held in memory instead"
                }
            }
            let (image, notes) = try PNGReader.readNoted(path: path, maxPixels: maxPixels)
            return Opened(
                source: NamedImage(image: image, name: path, notes: notes + (why.map { [$0] } ?? [])), format: format,
                level: 0, mpp: nil, levelCount: 1)
        }
        let source = try openRegionSource(path: path, image: image, level: level, mpp: mpp)
        guard let leveled = source as? any LeveledSource, leveled.levels.indices.contains(leveled.level) else {
            return Opened(source: source, format: format, level: 0, mpp: nil, levelCount: 1)
        }
        let chosen = leveled.levels[leveled.level], zero = leveled.levels[0]
        return Opened(
            source: source, format: format, image: leveled.image, imageCount: leveled.imageCount,
            level: leveled.level, mpp: chosen.mpp, mppY: chosen.mppY, levelCount: leveled.levels.count,
            scale: leveled.level > 0
                ? LevelScale(levelZeroHeight: zero.height, levelZeroWidth: zero.width, downsample: chosen.downsample)
                : nil)
    }

    private enum DecodedPNG {
        case decoded(RawPixelFile)
        /// Why the folder cannot take it: the PNG is then decoded in memory, and a note says so.
        case noRoom(String)
    }

    /// The PNG at `path` decoded a band of rows at a time into a file of `folder` that has no name
    /// (`RawPixelFile.decoded`), read a region at a time: what grows with the image is on disk, not in memory
    /// (memory audit 50 F5: a worker held a 16 000² PNG's 732 MiB of samples while it mapped it; `run --in-process`
    /// too); nothing is left behind however the process ends. `noRoom` when the folder cannot take the samples
    /// (missing, without their room and 256 MiB to spare, read-only, full; review 30: filling the folder up to
    /// ENOSPC left `run`'s own store, there too, without room).
    private static func decodedPNG(_ path: String, folder: String, maxPixels: Int) throws -> DecodedPNG {
        let header = try PNGReader.header(path: path, maxPixels: maxPixels)
        if let room = RawPixelFile.folderTakes(header.sampleBytes, folder) {
            let memory = isMemoryBacked(folder) ? " (it is held in memory: a tmpfs)" : ""
            return .noRoom(
                "the temporary folder \(folder)\(memory) has room for \(SystemMemory.text(room)), and \(path) decoded "
                    + "takes \(SystemMemory.text(header.sampleBytes))")
        }
        var notes: [String] = []
        do {
            let raw = try RawPixelFile.decoded(png: path, inFolder: folder, maxPixels: maxPixels) { notes.append($0) }
            raw.notes = notes
            return .decoded(raw)
        } catch let error as ImageIOError where error.path == folder {
            return .noRoom(
                "the temporary folder \(folder) could not take \(path) decoded (\(error.detail))")
        }
    }

    /// `--image N` (N > 1) on a PNG.
    package static func pngHasOneImage(path: String, image: Int) -> SlideError {
        SlideError(
            .noSuchImage(image), path: path,
            detail: "the file has 1 image (a PNG): --image chooses an image of a TIFF that holds several")
    }

    /// What a map of `path` needs to be planned, without decoding any pixels: the
    /// mapped level's size and channels and which level was chosen.
    package struct Header: Sendable {
        package let width: Int
        package let height: Int
        package let channels: Int
        package let level: Int
        package let format: SlideFormat
        /// `Opened.image` and `Opened.imageCount`.
        package var image = 1
        package var imageCount = 1
        /// 8 or 16 (bits per sample the engine reads).
        package var bitDepth: Int = 8
        /// Microns per pixel of the level, when the file says.
        package var mpp: Double?
        /// `Opened.mppY`.
        package var mppY: Double?
        package var levelCount = 1
        /// `Opened.scale`.
        package var scale: LevelScale?
        /// `Opened.notes`.
        package var notes: [String] = []

        /// "PNG", or "level 1 of 3, 0.500 µm/px" (as `Opened.levelDescription`).
        package var levelDescription: String {
            ImageInput.levelDescription(
                format: format, image: image, imageCount: imageCount, level: level, levelCount: levelCount, mpp: mpp)
        }

        /// A warning for 16-bit samples with the default `--raw-scale`: they enter
        /// preprocessing as 0–65535, while nets are trained on 0–255 (nil otherwise).
        package func sixteenBitWarning(path: String, rawScale: Float) -> String? {
            guard bitDepth == 16, rawScale == 1 else { return nil }
            return "\(path) has 16-bit samples: they enter preprocessing as 0–65535. A net trained on 8-bit "
                + "images needs --raw-scale 0.00389105 (255/65535; or the scale of the bits your camera fills)"
        }
    }

    /// The header of `path` at the image and level `open` would choose (a PNG is not decoded).
    package static func header(
        path: String, image: Int? = nil, level: Int? = nil, mpp: Double? = nil,
        maxPixels: Int = PNGReader.defaultMaxPixels
    ) throws -> Header {
        if case .png = try SlideFormat.detect(path: path), level == nil, mpp == nil {
            if let image, image != 1 { throw pngHasOneImage(path: path, image: image) }
            let h = try PNGReader.header(path: path, maxPixels: maxPixels)
            return Header(
                width: h.width, height: h.height, channels: h.channels, level: 0, format: .png,
                bitDepth: h.bitDepth == 16 ? 16 : 8)
        }
        let opened = try open(path: path, image: image, level: level, mpp: mpp, maxPixels: maxPixels)
        let s = opened.source
        return Header(
            width: s.width, height: s.height, channels: s.channels, level: opened.level, format: opened.format,
            image: opened.image, imageCount: opened.imageCount, bitDepth: bitDepth(of: s), mpp: opened.mpp,
            mppY: opened.mppY, levelCount: opened.levelCount, scale: opened.scale, notes: opened.notes)
    }

    /// 16 for a source of 16-bit samples, else 8.
    static func bitDepth(of source: any RegionSource) -> Int {
        if let tiff = source as? TIFFRegionSource { return tiff.bitDepth == 16 ? 16 : 8 }
        if let png = source as? PixelImage, case .uint16 = png.samples { return 16 }
        return 8
    }

    /// The tissue mask of an opened image, answering in the mapped level's pixel
    /// coordinates; computed from the mapped image's smallest level that still has about
    /// 1024 pixels along its longer side, never from the full resolution of a slide.
    /// `tolerateDamage` (`--corrupt-tiles skip`): damaged parts of the view count as tissue.
    /// `announce` hears, before it starts, of a view read from a level over 8192 pixels
    /// a side (a file without small levels): that read takes minutes on a large image, and
    /// `announce` then also hears its progress (every 10 %). `stop` is asked before each block
    /// of the view is read: true ends the detection with `CancellationError` (an interrupted run).
    package static func tissueMask(
        _ opened: Opened, path: String, tolerateDamage: Bool = false, announce: (String) -> Void = { _ in },
        stop: () -> Bool = { false }
    ) throws -> TissueMask {
        let target = opened.source
        let options = TissueMask.Options(tolerateDamage: tolerateDamage)
        if case .png = opened.format {
            return try TissueMask.detect(source: target, options: options, watch: { _ in !stop() })
        }
        // The opened image's own pyramid (`--image`): its levels as its source read them.
        let levels =
            try (target as? any LeveledSource)?.levels ?? SlideInfo.inspect(path: path, image: opened.image).levels
        let level = levels.last { max($0.width, $0.height) >= options.maxDimension } ?? levels[0]
        let big = max(level.width, level.height) > 8192
        if big {
            announce(
                "--tissue reads level \(level.index) (\(level.width)×\(level.height)), the smallest this file has of "
                    + "at least \(options.maxDimension) pixels, "
                    + "in full for its ~\(options.maxDimension)-pixel view: this takes a while (a pyramidal file "
                    + "with small levels is read in seconds)")
        }
        var progress = ViewProgress(big: big, what: "level \(level.index)")
        func watch(_ fraction: Double) -> Bool {
            progress.message(at: fraction).map(announce)
            return !stop()
        }
        let hint = " (--corrupt-tiles skip maps such an image, leaving the damaged parts empty)"
        guard level.index != opened.level else {
            do {
                return try TissueMask.detect(
                    source: target, coverWidth: target.width, coverHeight: target.height, options: options,
                    watch: watch)
            } catch let error as SlideError where error.isCorruptData {
                throw TissueViewError(description: "--tissue could not read \(path): \(error)" + hint)
            }
        }
        do {
            let small = try openRegionSource(path: path, image: opened.image, level: level.index)
            return try TissueMask.detect(
                source: small, coverWidth: target.width, coverHeight: target.height, options: options, watch: watch)
        } catch let cancelled as CancellationError {
            throw cancelled
        } catch {
            // The error names a level the user did not ask for: say why it was read.
            throw TissueViewError(
                description: "--tissue looks for tissue in level \(level.index) of \(path) (a low-resolution view), "
                    + "and could not read it: \(error)"
                    + ((error as? SlideError)?.isCorruptData == true ? hint : ""))
        }
    }
}

extension ImageInput {
    /// The tissue mask of `path` at the image and level of `header` (as `tissueMask(_:path:…)`), without
    /// holding a PNG's pixels: a PNG is decoded a band of rows at a time, a slide read as its view needs.
    package static func tissueMask(
        path: String, header: Header, tolerateDamage: Bool = false, announce: (String) -> Void = { _ in },
        stop: () -> Bool = { false }
    ) throws -> TissueMask {
        guard case .png = header.format else {
            let opened = try open(path: path, image: header.image, level: header.level)
            return try tissueMask(opened, path: path, tolerateDamage: tolerateDamage, announce: announce, stop: stop)
        }
        let big = max(header.width, header.height) > 8192
        if big {
            let interlaced = (try? PNGReader.header(path: path).interlaced) ?? false
            announce(
                "--tissue decodes the whole PNG (\(header.width)×\(header.height)) for its view, "
                    + (interlaced ? "into a temporary file first (it is interlaced)" : "a band of rows at a time")
                    + ": this takes a while")
        }
        var progress = ViewProgress(big: big, what: "the PNG")
        return try TissueMask.detect(png: path, options: TissueMask.Options(tolerateDamage: tolerateDamage)) {
            progress.message(at: $0).map(announce)
            return !stop()
        }
    }
}

/// The progress of a `--tissue` view: a line at each tenth of `what` read, for a view of a big image.
private struct ViewProgress {
    let big: Bool
    let what: String
    var reported = 0

    mutating func message(at fraction: Double) -> String? {
        let tenth = Int(fraction * 10)
        guard big, tenth > reported else { return nil }
        reported = tenth
        return "--tissue view: \(tenth * 10) % of \(what) read"
    }
}

/// A slide's low-resolution view for `--tissue` could not be read.
package struct TissueViewError: Error, CustomStringConvertible, Sendable {
    package let description: String
}

/// A source that is one level of a pyramid of one image of a file.
protocol LeveledSource {
    var image: Int { get }
    var imageCount: Int { get }
    var level: Int { get }
    var levels: [SlideLevel] { get }
}

extension TIFFRegionSource: LeveledSource {}
extension OpenSlideRegionSource: LeveledSource {}

/// A decoded PNG with its path as its name (what errors name).
struct NamedImage: PixelSource {
    let image: PixelImage
    let name: String
    /// What the reader warned of (`PNGReader.readNoted`).
    var notes: [String] = []
    var width: Int { image.width }
    var height: Int { image.height }
    var channels: Int { image.channels }
    var bitDepth: Int { image.bitDepth }
    func value(y: Int, x: Int, channel: Int) -> Float { image.value(y: y, x: x, channel: channel) }
    func readRegion(_ rect: PixelRect) throws -> PixelRegion { try image.readRegion(rect) }
}
