import CSlideIO
import Foundation
import TesseraCore

/// The pyramid of a TIFF file: directory 0, then every later directory (main chain) that is tiled,
/// smaller and flagged reduced-resolution, and every SubIFD of directory 0 that is tiled, smaller,
/// and flagged or of the same aspect ratio (an Aperio file: every tiled directory).
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
    /// planes beyond the first (Z, T).
    let notes: [String]

    /// Reads the structure with `handle` (left on directory 0 when it returns).
    init(path: String, handle: TIFFHandle) throws {
        self.path = path
        fileSize = try FileSniffer.fileSize(path)
        guard case .tiff(let big, _) = try FileSniffer.kind(path) else {
            throw SlideError(.notTIFF, path: path, detail: "no TIFF header")
        }
        bigTIFF = big
        let info0 = try handle.select(.directory(0), level: 0)
        let layout0 = try TIFFLayout(info0, path: path, level: 0)
        description = handle.imageDescription()
        try Self.refuseChannelPlanes(description: description, layout: layout0, path: path)
        var candidates: [(TIFFDirectoryLocation, TIFFLayout)] = [(.directory(0), layout0)]
        for offset in handle.subIFDOffsets() where offset > 0 && offset < fileSize {
            if let info = try? handle.select(.subIFD(offset)),
                let layout = try? TIFFLayout(info, path: path, level: candidates.count)
            {
                candidates.append((.subIFD(offset), layout))
            }
        }
        let count = min(handle.directoryCount, 256)
        if count > 1 {
            for index in 1..<count {
                guard let info = try? handle.select(.directory(index)) else { break }
                if let layout = try? TIFFLayout(info, path: path, level: candidates.count) {
                    candidates.append((.directory(index), layout))
                }
            }
        }
        _ = try handle.select(.directory(0), level: 0)
        let aperio = description?.hasPrefix("Aperio") == true
        let pyramid =
            [candidates[0]]
            + candidates.dropFirst().filter { Self.isLevel($0, of: layout0, aperio: aperio) }
            .sorted { $0.1.width > $1.1.width }
        let (recorded, source) = Self.mpp(description: description, info: info0)
        let mpp0 = SlideLevel.plausibleMPP(recorded)
        mppSource = source.map { mpp0 == nil ? "\($0): \(recorded!) µm/px ignored (not plausible)" : $0 }
        var notes: [String] = []
        let pyramidLocations = Set(pyramid.map(\.0))
        if let larger = candidates.first(where: {
            !pyramidLocations.contains($0.0) && $0.1.width * $0.1.height > layout0.width * layout0.height
        }) {
            notes.append(
                "the file holds a larger image (\(larger.1.width)×\(larger.1.height), \(Self.describe(larger.0))) than the "
                    + "\(layout0.width)×\(layout0.height) one in directory 0, which is what is mapped (a thumbnail "
                    + "stored first?): extract the image you mean, e.g. tiffcp FILE,N OUT.tif")
        }
        if let description, description.contains("<OME"),
            case let (image?, _) = Self.omeImage(storedAt: 0, in: description)
        {
            let z = Self.number(after: "SizeZ=\"", in: image).map(Int.init) ?? 1
            let t = Self.number(after: "SizeT=\"", in: image).map(Int.init) ?? 1
            if z > 1 || t > 1 {
                notes.append(
                    "the OME image declares \(z) Z plane\(z == 1 ? "" : "s") and \(t) time point\(t == 1 ? "" : "s"): "
                        + "only the first plane (Z 0, T 0) is mapped")
            }
        }
        if let cut = TIFFDirectoryChain.cutShortNote(path: path) { notes.append(cut) }
        self.notes = notes
        levels = pyramid.enumerated().map { index, candidate in
            let layout = candidate.1
            let downsample =
                (Double(layout0.width) / Double(layout.width)
                    + Double(layout0.height) / Double(layout.height)) / 2
            let mpp = mpp0.map { $0 * Double(layout0.width) / Double(layout.width) }
            let level = SlideLevel(
                index: index, width: layout.width, height: layout.height, downsample: downsample,
                mpp: mpp, tileWidth: layout.tiled ? layout.chunkWidth : nil,
                tileHeight: layout.tiled ? layout.chunkHeight : nil)
            return Level(location: candidate.0, layout: layout, info: level)
        }
    }

    /// A later directory of the main chain is a level only when flagged reduced-resolution
    /// (OpenSlide's generic-tiff rule): an unflagged page of the same shape is another image (an
    /// OME-TIFF's second series, a macro photo), and taking it for a level put `--tissue`'s view,
    /// `--level` and `--mpp` on that image (user audit). A SubIFD of directory 0 is a level of it
    /// (OME-TIFF's pyramid) when flagged or of the same aspect ratio. In an Aperio file every tiled
    /// directory is a level (its levels are not flagged; its label and macro are striped), as
    /// OpenSlide's aperio reader has it.
    private static func isLevel(
        _ candidate: (TIFFDirectoryLocation, TIFFLayout), of base: TIFFLayout, aperio: Bool
    ) -> Bool {
        let layout = candidate.1
        guard layout.tiled, layout.width < base.width, layout.height < base.height,
            layout.channels == base.channels, layout.bytesPerSample == base.bytesPerSample
        else { return false }
        if layout.subfileType & 1 != 0 || aperio { return true }
        guard case .subIFD = candidate.0 else { return false }
        let aspect = Double(layout.width) / Double(layout.height)
        let baseAspect = Double(base.width) / Double(base.height)
        return abs(aspect / baseAspect - 1) < 0.02
    }

    /// Level-0 µm/px: Aperio's `|MPP = x`, OME-XML's PhysicalSizeX (in µm), else XResolution with a unit.
    static func mpp(description: String?, info: tsl_dir_info) -> (Double?, String?) {
        if let description {
            if description.hasPrefix("Aperio"), let value = number(after: "MPP = ", in: description), value > 0 {
                return (value, "Aperio description")
            }
            if description.contains("<OME") {
                // The <Image> stored from IFD 0 (the one mapped), not the first PhysicalSizeX in the
                // XML: a macro or label image may come first, with another scale or none.
                let (image, count) = omeImage(storedAt: 0, in: description)
                if let image, let value = number(after: "PhysicalSizeX=\"", in: image), value > 0 {
                    let unit = string(after: "PhysicalSizeXUnit=\"", in: image) ?? "µm"
                    let scale: Double? = ["µm": 1, "\u{03BC}m": 1, "um": 1, "nm": 0.001, "mm": 1000][unit]
                    if let scale { return (value * scale, count > 1 ? "OME-XML, image 1 of \(count)" : "OME-XML") }
                }
                // That image records no scale: not another's; its IFD's resolution tags may.
            }
        }
        let resolution = info.x_resolution
        guard resolution > 0, resolution.isFinite else { return (nil, nil) }
        switch info.resolution_unit {
        case 2: return (25400 / resolution, "resolution tags")
        case 3: return (10000 / resolution, "resolution tags")
        default: return (nil, nil)
        }
    }

    /// The OME-XML `<Image>` element whose pixels start at IFD `ifd` (a `TiffData` without
    /// `IFD` starts at 0), and how many images the XML lists.
    static func omeImage(storedAt ifd: Int, in xml: String) -> (String?, Int) {
        var images: [Substring] = []
        var rest = xml[...]
        while let start = rest.range(of: "<Image ") ?? rest.range(of: "<Image>") {
            let end = rest[start.upperBound...].range(of: "</Image>")?.upperBound ?? rest.endIndex
            images.append(rest[start.lowerBound..<end])
            rest = rest[end...]
        }
        let match = images.first { image in
            guard let data = image.range(of: "<TiffData") else { return false }
            let tag = image[data.upperBound...].prefix { $0 != ">" }
            return (number(after: "IFD=\"", in: String(tag)).map(Int.init) ?? 0) == ifd
        }
        return (match.map(String.init) ?? (images.count == 1 ? String(images[0]) : nil), images.count)
    }

    static func describe(_ location: TIFFDirectoryLocation) -> String {
        switch location {
        case .directory(let index): return "directory \(index)"
        case .subIFD: return "a SubIFD"
        }
    }

    /// Refuses an OME-TIFF whose image 0 has more channels than a page holds samples (each
    /// channel its own page, as fluorescence is stored): only the first would be mapped, as gray
    /// (user audit). RGB stored as one page of 3 samples declares SizeC 3 and passes.
    static func refuseChannelPlanes(description: String?, layout: TIFFLayout, path: String) throws {
        guard let description, description.contains("<OME"),
            case let (image?, _) = omeImage(storedAt: 0, in: description),
            let channels = number(after: "SizeC=\"", in: image).map(Int.init), channels > layout.samplesPerPixel
        else { return }
        throw SlideError(
            .unsupportedSampleFormat("\(channels) channel planes"), path: path,
            detail: "the OME image declares \(channels) channels (SizeC) stored as separate planes of "
                + "\(layout.samplesPerPixel) sample\(layout.samplesPerPixel == 1 ? "" : "s"): only the first would be "
                + "mapped. Tessera maps gray or RGB images: write the channels as one RGB image, or one file per channel"
        )
    }

    private static func string(after marker: String, in text: String) -> String? {
        guard let range = text.range(of: marker) else { return nil }
        let rest = text[range.upperBound...]
        let end = rest.firstIndex { $0 == "\"" || $0 == "|" || $0 == "\n" || $0 == "\r" } ?? rest.endIndex
        return String(rest[..<end]).trimmingCharacters(in: .whitespaces)
    }

    private static func number(after marker: String, in text: String) -> Double? {
        string(after: marker, in: text).flatMap { Double($0) }.flatMap { $0.isFinite ? $0 : nil }
    }
}
