import CSlideIO
import Foundation
import TesseraCore

/// The pyramid of one image of a TIFF file (`TIFFImages`; image 1 starts at directory 0): the image's
/// first directory, then every later directory of the main chain the image owns that is tiled,
/// smaller and flagged reduced-resolution, and every SubIFD of its first directory that is tiled,
/// smaller, and flagged or of the same aspect ratio (an Aperio file: every tiled directory).
/// Striped directories after the first (Aperio's thumbnail, label, macro) are never levels.
struct TIFFStructure: Sendable {
    struct Level: Sendable {
        let location: TIFFDirectoryLocation
        let layout: TIFFLayout
        let info: SlideLevel
    }

    let path: String
    let bigTIFF: Bool
    let fileSize: UInt64
    let levels: [Level]
    let description: String?
    /// Where the level-0 µm/px came from ("Aperio description", "OME-XML", "resolution tags"), if known.
    let mppSource: String?
    /// What a user should know about what is mapped: a larger image elsewhere in the file, OME
    /// planes beyond the first (Z, T), signs of damage (`damage`, first).
    let notes: [String]
    /// Signs of a truncated or damaged file (`damageNotes`): what a refused --level or --mpp may owe to it.
    let damage: [String]

    /// The image read (1-based: `TIFFImages`) and how many the file holds.
    let image: Int
    let imageCount: Int
    /// The image's name in the OME-XML, when it has one.
    let imageName: String?

    /// Reads the structure of image `image` (1 when nil; `notes` then say when the file holds
    /// others) with `handle`, which is left on the image's first directory when it returns.
    init(path: String, handle: TIFFHandle, image requested: Int? = nil) throws {
        try self.init(path: path, handle: handle, images: Self.images(path: path, handle: handle), image: requested)
    }

    /// The file's images, read with `handle`, and directory 0's ImageDescription.
    static func images(path: String, handle: TIFFHandle) throws -> (TIFFImages, description: String?) {
        guard case .tiff = try FileSniffer.kind(path) else {
            throw SlideError(.notTIFF, path: path, detail: "no TIFF header")
        }
        let first = try handle.select(.directory(0), level: 0)
        let description = handle.imageDescription()
        let images = TIFFImages(
            path: path, handle: handle, description: description,
            layout0: try? TIFFLayout(first, path: path, level: 0))
        return (images, description)
    }

    /// The structure of image `requested` of `images` (read by `images(path:handle:)`).
    init(
        path: String, handle: TIFFHandle, images read: (TIFFImages, description: String?), image requested: Int?
    ) throws {
        let (images, description0) = read
        self.path = path
        fileSize = try FileSniffer.fileSize(path)
        guard case .tiff(let big, _) = try FileSniffer.kind(path) else {
            throw SlideError(.notTIFF, path: path, detail: "no TIFF header")
        }
        bigTIFF = big
        let number = requested ?? 1
        imageCount = images.entries.count
        guard number >= 1, number <= images.entries.count else {
            throw SlideError(
                .noSuchImage(number), path: path,
                detail: "the file has \(images.entries.count) image\(images.entries.count == 1 ? "" : "s"): "
                    + images.listing())
        }
        let entry = images.entries[number - 1]
        guard let base = entry.directory else {
            throw SlideError(
                .noSuchImage(number), path: path, image: number,
                detail: "image \(number) of the file's OME-XML is not in it: \(entry.unavailable ?? "")")
        }
        image = number
        imageName = entry.name
        do {
            let info0 = try handle.select(.directory(base), level: 0)
            // A truncated copy: libtiff reads the directory, but warns of tags it could not read (the
            // description holding µm/px, the SubIFD list holding the levels), which were then just absent.
            let directoryWarning = handle.directoryWarnings()
            let subIFDs = handle.subIFDOffsets()
            let layout0 = try TIFFLayout(info0, path: path, level: 0)
            description = entry.ome != nil || base == 0 ? description0 : handle.imageDescription()
            try Self.refuseChannelPlanes(ome: entry.ome, layout: layout0, path: path)
            var candidates: [(TIFFDirectoryLocation, TIFFLayout)] = [(.directory(base), layout0)]
            var unreadableSubIFDs: [String] = []
            for offset in subIFDs where offset > 0 && offset < fileSize {
                do {
                    let info = try handle.select(.subIFD(offset))
                    if let layout = try? TIFFLayout(info, path: path, level: candidates.count) {
                        candidates.append((.subIFD(offset), layout))
                    }
                } catch let error as SlideError {
                    // A level whose directory was cut off (review: it vanished without a word).
                    unreadableSubIFDs.append("at byte \(offset): \(error.detail)")
                }
            }
            candidates += entry.followers.compactMap { index in images.layouts[index].map { (.directory(index), $0) } }
            _ = try handle.select(.directory(base), level: 0)
            let aperio = description0?.hasPrefix("Aperio") == true
            let pyramid =
                [candidates[0]]
                + candidates.dropFirst().filter { Self.isLevel($0, of: layout0, aperio: aperio) }
                .sorted { $0.1.width > $1.1.width }
            let (recorded, source) = Self.mpp(
                description: description, ome: entry.ome.map { ($0, images.omeCount, number) }, info: info0)
            // Resolution tags of 72, 96 or 300 dpi are an image editor's placeholder, not a scanner's (user
            // audit: 72 dpi became 352.8 µm/px in the map's metadata).
            let placeholder = source == "resolution tags" && (recorded ?? 0) > Self.largestTagMPP
            let mpp0 = placeholder ? nil : SlideLevel.plausibleMPP(recorded)
            // The height, where it is recorded apart (whole-slide audit 35 F7: the maps claimed square pixels).
            let mppY0 =
                mpp0 == nil ? nil : SlideLevel.plausibleMPP(Self.mppY(ome: entry.ome, info: info0, source: source))
            mppSource = source.map {
                guard mpp0 == nil, let recorded else { return $0 }
                return placeholder
                    ? "\($0): \(String(format: "%.1f", recorded)) µm/px (\(String(format: "%.0f", 25400 / recorded)) dpi) "
                        + "ignored: a placeholder, not a microscope's resolution"
                    : "\($0): \(recorded) µm/px ignored (not plausible)"
            }
            let damage = try Self.damageNotes(
                handle, pyramid: pyramid.map(\.0), directoryWarning: directoryWarning,
                lostSubIFDs: subIFDs.count { [fileSize] in $0 >= fileSize }, unreadableSubIFDs: unreadableSubIFDs,
                fileSize: fileSize)
            self.damage = damage
            var notes = damage
            _ = try handle.select(.directory(base), level: 0)
            if mpp0 == nil, recorded != nil, let mppSource { notes.append(mppSource) }
            if let note = Self.ignoredOMEScaleNote(entry.ome, usedSource: source) { notes.append(note) }
            if requested == nil {
                let rest = images.layouts.sorted { $0.key < $1.key }.map {
                    (TIFFDirectoryLocation.directory($0.key), $0.value)
                }
                let seen = Set(candidates.map(\.0))
                notes += Self.otherImageNotes(
                    images, among: candidates + rest.filter { !seen.contains($0.0) }, pyramid: pyramid.map(\.0),
                    layout0: layout0)
            }
            if let ome = entry.ome {
                let z = OMEXML.number(after: "SizeZ=\"", in: ome.xml).map(Int.init) ?? 1
                let t = OMEXML.number(after: "SizeT=\"", in: ome.xml).map(Int.init) ?? 1
                if z > 1 || t > 1 {
                    notes.append(
                        "the OME image declares \(z) Z plane\(z == 1 ? "" : "s") and \(t) time point\(t == 1 ? "" : "s"): "
                            + "only the first plane (Z 0, T 0) is mapped")
                }
            }
            if let cut = TIFFDirectoryChain.cutShortNote(path: path) { notes.append(cut) }
            if let note = SlideLevel.nonSquareNote(
                x: recorded, y: Self.mppY(ome: entry.ome, info: info0, source: source))
            {
                notes.append(note)
            }
            self.notes = notes
            levels = pyramid.enumerated().map { index, candidate in
                let layout = candidate.1
                let downsample =
                    (Double(layout0.width) / Double(layout.width)
                        + Double(layout0.height) / Double(layout.height)) / 2
                // The ratio first: level 0 keeps the file's value exactly (x · W / W is not always x).
                let mpp = mpp0.map { $0 * (Double(layout0.width) / Double(layout.width)) }
                let mppY = mppY0.map { $0 * (Double(layout0.height) / Double(layout.height)) }
                let level = SlideLevel(
                    index: index, width: layout.width, height: layout.height, downsample: downsample,
                    mpp: mpp, mppY: mppY, tileWidth: layout.tiled ? layout.chunkWidth : nil,
                    tileHeight: layout.tiled ? layout.chunkHeight : nil)
                return Level(location: candidate.0, layout: layout, info: level)
            }
        } catch let error as SlideError {
            throw error.inImage(number)
        }
    }

    /// Signs of a truncated or damaged file (a user audit: an incomplete copy passed `inspect-image`, its
    /// lost levels and µm/px looking like the file's own properties): libtiff's complaints reading the
    /// image's directory, SubIFD levels past the end, and tiles or strips of a level whose bytes run past
    /// the end (checked from their offsets, without reading them). Leaves `handle` on some level.
    static func damageNotes(
        _ handle: TIFFHandle, pyramid: [TIFFDirectoryLocation], directoryWarning: String?, lostSubIFDs: Int,
        unreadableSubIFDs: [String], fileSize: UInt64
    ) throws -> [String] {
        var notes: [String] = []
        if let directoryWarning, directoryWarning.contains("Offsets") || directoryWarning.contains("ByteCounts") {
            notes.append(
                "damaged: libtiff could not read where the image's tiles or strips lie (\(directoryWarning)): those "
                    + "it cannot locate are refused")
        } else if let directoryWarning {
            notes.append(
                "damaged or truncated? libtiff could not read all of the image's directory (\(directoryWarning)): "
                    + "what it holds (the description with µm/px, the list of levels) may be missing here")
        }
        if lostSubIFDs > 0 {
            notes.append(
                "truncated: \(lostSubIFDs) of the image's levels (SubIFDs) start past the end of the file "
                    + "(\(fileSize) bytes) and are left out: an incomplete copy?")
        }
        if let first = unreadableSubIFDs.first {
            notes.append(
                "damaged or truncated? \(unreadableSubIFDs.count) of the image's levels (SubIFDs) cannot be read and "
                    + "are left out (the first \(first))")
        }
        for (index, location) in pyramid.enumerated() {
            let info = try handle.select(location, level: index)
            let count = Int(info.chunk_count)
            // Strips with no byte count are fine (libtiff works them out); tiles are not.
            let empty = info.tiled != 0 ? (0..<count).filter { handle.chunkLocation($0)?.byteCount == 0 } : []
            if let first = empty.first {
                notes.append(
                    "damaged: \(empty.count) of level \(index)'s \(count) tiles hold no data (0 bytes; the first, "
                        + "tile \(first)): they cannot be read (--corrupt-tiles skip maps around them)")
            }
            guard let past = handle.chunksPastEnd(count: count, fileSize: fileSize) else { continue }
            let kind = info.tiled != 0 ? "tile" : "strip"
            notes.append(
                "truncated: \(past.count) of level \(index)'s \(count) \(kind)s lie past the end of the file "
                    + "(\(fileSize) bytes; the first, \(kind) \(past.first), at byte \(past.offset)): an incomplete "
                    + "copy? They cannot be read (--corrupt-tiles skip maps around them)")
        }
        return notes
    }

    /// With the default image, notes on the file's other images: a larger image than the one
    /// mapped (a thumbnail stored first?), and that `--image` picks another.
    private static func otherImageNotes(
        _ images: TIFFImages, among candidates: [(TIFFDirectoryLocation, TIFFLayout)], pyramid: [TIFFDirectoryLocation],
        layout0: TIFFLayout
    ) -> [String] {
        var notes: [String] = []
        let levels = Set(pyramid)
        if let larger = candidates.first(where: {
            !levels.contains($0.0) && $0.1.width * $0.1.height > layout0.width * layout0.height
        }) {
            let other = images.entries.firstIndex { entry in entry.directory.map { .directory($0) } == larger.0 }
            notes.append(
                "the file holds a larger image (\(larger.1.width)×\(larger.1.height), \(Self.describe(larger.0))"
                    + (other.map { ", image \($0 + 1)" } ?? "") + ") than the "
                    + "\(layout0.width)×\(layout0.height) one in directory 0, which is what is mapped (a thumbnail "
                    + "stored first?): "
                    + (other.map { "--image \($0 + 1) maps it" }
                        ?? "extract the image you mean, e.g. tiffcp FILE,N OUT.tif"))
        }
        if images.entries.count > 1 {
            notes.append("image 1 of \(images.entries.count) mapped; --image N picks another")
        }
        return notes
    }

    /// A later directory of the main chain is a level only when flagged reduced-resolution
    /// (OpenSlide's generic-tiff rule): an unflagged page of the same shape is another image (an
    /// OME-TIFF's second series, a macro photo), and taking it for a level put `--tissue`'s view,
    /// `--level` and `--mpp` on that image (user audit). A SubIFD of directory 0 is a level of it
    /// (OME-TIFF's pyramid) when flagged or of the same aspect ratio. In an Aperio file every tiled
    /// directory is a level (its levels are not flagged; its label and macro are striped), as
    /// OpenSlide's aperio reader has it.
    static func isLevel(
        _ candidate: (TIFFDirectoryLocation, TIFFLayout), of base: TIFFLayout, aperio: Bool
    ) -> Bool {
        let layout = candidate.1
        // Striped reductions in the main chain are thumbnails, labels and macro photos (Aperio); in
        // SubIFDs they are the image's own levels, which bioformats and tifffile may write in strips
        // (user audit: they were dropped without a word, and --level/--mpp refused them).
        let subIFD: Bool
        if case .subIFD = candidate.0 { subIFD = true } else { subIFD = false }
        guard layout.tiled || subIFD, layout.width < base.width, layout.height < base.height,
            layout.channels == base.channels, layout.bytesPerSample == base.bytesPerSample
        else { return false }
        if layout.tiled && (layout.subfileType & 1 != 0 || aperio) { return true }
        guard subIFD else { return false }
        let aspect = Double(layout.width) / Double(layout.height)
        let baseAspect = Double(base.width) / Double(base.height)
        return abs(aspect / baseAspect - 1) < 0.02
    }

    /// Level-0 µm/px: Aperio's `|MPP = x`, OME-XML's PhysicalSizeX (in µm) of the image read, else
    /// XResolution with a unit. `ome`: the image's OME-XML element, how many the XML lists, and its number.
    static func mpp(
        description: String?, ome: (image: OMEXML.Image, count: Int, number: Int)?, info: tsl_dir_info
    )
        -> (Double?, String?)
    {
        if let description, description.hasPrefix("Aperio") {
            // An Aperio file's scale is its description's, as OpenSlide (and inspect-image) has it; its resolution
            // tags are not used (verification audit 37 N5: run took them where inspect-image showed none).
            guard let value = OMEXML.number(after: "MPP = ", in: description), value > 0 else { return (nil, nil) }
            return (value, "Aperio description")
        }
        // The <Image> read (stored from its IFD), not the first PhysicalSizeX in the XML: a macro or
        // label image may come first, with another scale or none.
        if let (image, count, number) = ome, let value = OMEXML.number(after: "PhysicalSizeX=\"", in: image.xml),
            value > 0
        {
            let unit = OMEXML.string(after: "PhysicalSizeXUnit=\"", in: image.xml) ?? "µm"
            let scale = OMEXML.micrometres(perUnit: unit)
            if let scale { return (value * scale, count > 1 ? "OME-XML, image \(number) of \(count)" : "OME-XML") }
        }
        // That image records no scale: not another's; its IFD's resolution tags may.
        let resolution = info.x_resolution
        guard resolution > 0, resolution.isFinite else { return (nil, nil) }
        switch info.resolution_unit {
        case 2: return (25400 / resolution, "resolution tags")
        case 3: return (10000 / resolution, "resolution tags")
        default: return (nil, nil)
        }
    }

    /// A note when the image's OME-XML gives a PhysicalSizeX that is not a size (negative, 0, NaN) or in a unit
    /// not known, so that the scale came from elsewhere or is unknown (audit 53 F11: dropped without a word).
    static func ignoredOMEScaleNote(_ ome: OMEXML.Image?, usedSource: String?) -> String? {
        guard let ome, usedSource?.hasPrefix("OME-XML") != true,
            let text = OMEXML.string(after: "PhysicalSizeX=\"", in: ome.xml)
        else { return nil }
        let unit = OMEXML.string(after: "PhysicalSizeXUnit=\"", in: ome.xml) ?? "µm"
        let instead = usedSource.map { "the \($0) give the scale" } ?? "the scale is unknown"
        return "the OME-XML's PhysicalSizeX=\"\(text.printable(limit: 40))\" (\(unit.printable(limit: 40))) is not a "
            + "pixel size: ignored, \(instead)"
    }

    /// Coarser than this (µm/px, 508 dpi) from resolution tags is taken for a placeholder.
    static let largestTagMPP = 50.0

    /// Level-0 µm/px along y, from where `mpp` read x (`source`): OME-XML's PhysicalSizeY or the
    /// YResolution tag; nil when that gives none (Aperio records one size for both).
    static func mppY(ome: OMEXML.Image?, info: tsl_dir_info, source: String?) -> Double? {
        guard let source else { return nil }
        if source.hasPrefix("OME-XML") {
            guard let ome, let value = OMEXML.number(after: "PhysicalSizeY=\"", in: ome.xml), value > 0 else {
                return nil
            }
            let unit = OMEXML.string(after: "PhysicalSizeYUnit=\"", in: ome.xml) ?? "µm"
            let scale = OMEXML.micrometres(perUnit: unit)
            return scale.map { value * $0 }
        }
        guard source == "resolution tags", info.y_resolution > 0, info.y_resolution.isFinite else { return nil }
        switch info.resolution_unit {
        case 2: return 25400 / info.y_resolution
        case 3: return 10000 / info.y_resolution
        default: return nil
        }
    }

    static func describe(_ location: TIFFDirectoryLocation) -> String {
        switch location {
        case .directory(let index): return "directory \(index)"
        case .subIFD: return "a SubIFD"
        }
    }

    /// Refuses an OME image (`ome`) with more channels than a page holds samples (each channel its
    /// own page, as fluorescence is stored): only the first would be mapped, as gray (user audit).
    /// RGB stored as one page of 3 samples declares SizeC 3 and passes.
    static func refuseChannelPlanes(ome: OMEXML.Image?, layout: TIFFLayout, path: String) throws {
        guard let ome, let channels = OMEXML.number(after: "SizeC=\"", in: ome.xml).map(Int.init),
            channels > layout.samplesPerPixel
        else { return }
        throw SlideError(
            .unsupportedSampleFormat("\(channels) channel planes"), path: path,
            detail: "the OME image declares \(channels) channels (SizeC) stored as separate planes of "
                + "\(layout.samplesPerPixel) sample\(layout.samplesPerPixel == 1 ? "" : "s"): only the first would be "
                + "mapped. Tessera maps gray or RGB images: write the channels as one RGB image, or one file per channel"
        )
    }
}
