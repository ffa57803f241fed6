import COpenSlide
import Foundation
import TesseraCore

/// What an image file holds, for an `inspect-image` command.
package struct SlideInfo: Sendable, Equatable {
    package let path: String
    package let format: SlideFormat
    /// OpenSlide's vendor name when OpenSlide recognises the file ("generic-tiff" for tiled TIFFs it also reads).
    package let vendor: String?
    package let width: Int
    package let height: Int
    package let levels: [SlideLevel]
    /// Channels and bit depth a region source delivers.
    package let channels: Int
    package let bitDepth: Int
    /// Level 0's compression ("JPEG", "deflate", …), when the file is a TIFF.
    package let compression: String?
    package let tileWidth: Int?
    package let tileHeight: Int?
    /// Level-0 µm/px, when declared.
    package let mpp: Double?
    package let objectivePower: Double?
    /// OpenSlide's associated images ("thumbnail", "label", "macro").
    package let associatedImages: [String]
    /// OpenSlide's properties, or for a TIFF a few of its tags ("tiff.ImageDescription", "mpp.source").
    package let properties: [String: String]
    /// The image described (from 1: `--image`), and every image of the file (the first
    /// `maxListed`; one for the files OpenSlide reads).
    package var image = 1
    package var images: [SlideImageSummary] = []
    /// How many images the file holds.
    package var imageCount = 1

    /// Images listed at most (a plain TIFF of many pages is as many images).
    static let maxListed = 64

    /// Describes image `image` (from 1; nil: image 1) of `path` without decoding any pixels.
    package static func inspect(path: String, image: Int? = nil) throws -> SlideInfo {
        let format = try SlideFormat.detect(path: path)
        switch format {
        case .tiff: return try inspectTIFF(path: path, format: format, image: image)
        case .openSlide(let vendor):
            return try inspectOpenSlide(path: path, format: format, vendor: vendor, image: image)
        case .png: throw SlideError(.notTIFF, path: path, detail: "a PNG file: the PNG reader describes it")
        case .unknown:
            throw SlideError(.notTIFF, path: path, detail: "no TIFF header, and OpenSlide does not recognise it")
        }
    }

    private static func inspectTIFF(
        path: String, format: SlideFormat, image: Int?, notes: [String] = []
    ) throws -> SlideInfo {
        let handle = try TIFFHandle(path: path)
        let read = try TIFFStructure.images(path: path, handle: handle)
        let structure = try TIFFStructure(path: path, handle: handle, images: read, image: image)
        let count = read.0.entries.count
        let images = (1...min(count, maxListed)).map { number in
            number == structure.image
                ? SlideImageSummary(structure) : SlideImageSummary.of(number, path: path, handle: handle, images: read)
        }
        let base = structure.levels[0]
        var properties: [String: String] = [:]
        properties["tiff.ImageDescription"] = structure.description
        properties["mpp.source"] = structure.mppSource
        properties["tiff.Photometric"] = TIFFNames.photometric(base.layout.photometric)
        properties["tiff.SamplesPerPixel"] = String(base.layout.samplesPerPixel)
        for (i, note) in (notes + structure.notes).enumerated() { properties["note.\(i + 1)"] = note }
        return SlideInfo(
            path: path, format: format, vendor: openslide_detect_vendor(path).map { String(cString: $0) },
            width: base.layout.width, height: base.layout.height, levels: structure.levels.map(\.info),
            channels: base.layout.channels, bitDepth: base.layout.bytesPerSample * 8,
            compression: TIFFNames.compression(base.layout.compression),
            tileWidth: base.info.tileWidth, tileHeight: base.info.tileHeight, mpp: base.info.mpp,
            objectivePower: nil, associatedImages: [], properties: properties.compactMapValues { $0 },
            image: structure.image, images: images, imageCount: count)
    }

    private static func inspectOpenSlide(
        path: String, format: SlideFormat, vendor: String, image: Int?
    ) throws -> SlideInfo {
        let handle: OpenSlideHandle
        do {
            handle = try OpenSlideHandle(path: path)
        } catch let error as SlideError {
            guard let note = try openSlideFallback(path: path, error),
                case .tiff(let big, _) = try FileSniffer.kind(path)
            else { throw error }
            return try inspectTIFF(path: path, format: .tiff(bigTIFF: big), image: image, notes: [note])
        }
        if let image, image != 1 { throw openSlideHasOneImage(path: path, vendor: vendor, image: image) }
        let levels = handle.levels()
        guard let base = levels.first else {
            throw SlideError(.openSlide, path: path, detail: "OpenSlide reports no levels")
        }
        var properties: [String: String] = [:]
        for name in handle.propertyNames { properties[name] = handle.property(name) }
        let notes =
            (TIFFDirectoryChain.cutShortNote(path: path).map { [$0] } ?? [])
            + OpenSlideRegionSource.tiffDamageNotes(path, vendor: vendor)
        for (i, note) in notes.enumerated() { properties["note.\(i + 1)"] = note }
        var compression: String?
        if case .tiff = try FileSniffer.kind(path), let tiff = try? TIFFHandle(path: path),
            let info = try? tiff.select(.directory(0))
        {
            compression = TIFFNames.compression(Int(info.compression))
        }
        return SlideInfo(
            path: path, format: format, vendor: vendor, width: base.width, height: base.height,
            levels: levels, channels: 3, bitDepth: 8, compression: compression,
            tileWidth: base.tileWidth, tileHeight: base.tileHeight, mpp: base.mpp,
            objectivePower: properties["openslide.objective-power"].flatMap(Double.init),
            associatedImages: handle.associatedImageNames, properties: properties,
            images: [
                SlideImageSummary(
                    number: 1, name: nil, width: base.width, height: base.height, levelCount: levels.count,
                    mpp: base.mpp, problem: nil)
            ])
    }

    /// A few lines for a terminal.
    package var summary: String {
        var lines = ["\(path): \(format)" + (vendor.map { ", OpenSlide vendor \($0)" } ?? "")]
        if imageCount > 1 {
            let maps =
                image == 1 ? "run maps image 1 (--image N maps image N)" : "run --image \(image) maps image \(image)"
            lines.append("\(imageCount) images; \(maps), described below:")
            lines += images.map { "  \($0)" + ($0.number == image ? " (mapped)" : "") }
            if imageCount > images.count { lines.append("  … and \(imageCount - images.count) more") }
        }
        var line = "\(width)×\(height) px, \(channels) channel\(channels == 1 ? "" : "s"), \(bitDepth)-bit"
        if let compression { line += ", \(compression)" }
        if let tileWidth, let tileHeight { line += ", tiles \(tileWidth)×\(tileHeight)" }
        if let mpp { line += ", \(formatNumber(mpp)) µm/px" }
        if let objectivePower { line += ", \(formatNumber(objectivePower))×" }
        lines.append(line)
        lines += levels.map { "  \($0)" }
        if !associatedImages.isEmpty { lines.append("associated images: " + associatedImages.joined(separator: ", ")) }
        lines += properties.keys.filter { $0.hasPrefix("note.") }.sorted().map { "note: \(properties[$0]!)" }
        return lines.joined(separator: "\n")
    }
}
