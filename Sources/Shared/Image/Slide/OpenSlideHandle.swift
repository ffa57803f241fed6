import COpenSlide
import Foundation
import TesseraCore

/// An open `openslide_t` and the slide-wide facts read from it once.
final class OpenSlideHandle {
    let raw: OpaquePointer

    init(path: String) throws {
        _ = TIFFHandle.quietGlobalWarnings
        guard let handle = openslide_open(path) else {
            // OpenSlide opens what it detects, so a detected format it cannot open is a damaged or unusual file.
            guard let vendor = openslide_detect_vendor(path).map({ String(cString: $0) }) else {
                throw SlideError(.notTIFF, path: path, detail: "OpenSlide does not recognise the format")
            }
            throw SlideError(
                .openSlide, path: path,
                detail:
                    "OpenSlide recognises the file as '\(vendor)' but cannot open it (its warnings, if any, are above)")
        }
        if let error = openslide_get_error(handle) {
            let message = String(cString: error)
            openslide_close(handle)
            throw SlideError(.openSlide, path: path, detail: "OpenSlide cannot open it: \(message)")
        }
        raw = handle
    }

    deinit { openslide_close(raw) }

    var error: String? { openslide_get_error(raw).map { String(cString: $0) } }

    func property(_ name: String) -> String? { openslide_get_property_value(raw, name).map { String(cString: $0) } }

    var propertyNames: [String] { strings(openslide_get_property_names(raw)) }
    var associatedImageNames: [String] { strings(openslide_get_associated_image_names(raw)) }

    private func strings(_ list: UnsafePointer<UnsafePointer<CChar>?>?) -> [String] {
        guard let list else { return [] }
        var names: [String] = []
        var index = 0
        while let name = list[index] {
            names.append(String(cString: name))
            index += 1
        }
        return names
    }

    /// The levels as OpenSlide reports them, with µm/px from `openslide.mpp-x` times the downsample.
    func levels() -> [SlideLevel] {
        let count = max(0, Int(openslide_get_level_count(raw)))
        let mpp0 = SlideLevel.plausibleMPP(property("openslide.mpp-x").flatMap(Double.init))
        let mppY0 = SlideLevel.plausibleMPP(property("openslide.mpp-y").flatMap(Double.init))
        return (0..<count).map { index in
            var width: Int64 = 0, height: Int64 = 0
            openslide_get_level_dimensions(raw, Int32(index), &width, &height)
            let downsample = openslide_get_level_downsample(raw, Int32(index))
            let tileWidth = property("openslide.level[\(index)].tile-width").flatMap { Int($0) }
            let tileHeight = property("openslide.level[\(index)].tile-height").flatMap { Int($0) }
            return SlideLevel(
                index: index, width: Int(width), height: Int(height), downsample: downsample,
                mpp: mpp0.map { $0 * downsample }, mppY: mpp0 == nil ? nil : mppY0.map { $0 * downsample },
                tileWidth: tileWidth, tileHeight: tileHeight)
        }
    }
}
