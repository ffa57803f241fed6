import Foundation
import Logging
import TesseraCore
import TesseraImage

/// What a map's outputs need on disk, checked against the free space of `--out` before
/// anything is computed: a slide's `.npy` alone can be tens of gigabytes, and a run that
/// finds out after hours of computing, at the last write, has wasted them.
struct OutputSpace: Equatable {
    /// Bytes the outputs need whatever the data: the `.npy` (float32, uncompressed).
    var exact: UInt64
    /// Bytes they need at most: every output uncompressed, the chunked ones' pyramids and the
    /// run's temporary map store included. Compressed outputs usually need far less.
    var atMost: UInt64

    /// The need of a `classes` × `height` × `width` map written as `options` says, its
    /// chunked store holding `dtype` values (`--dtype`).
    init(height: Int, width: Int, classes: Int, dtype: MapDType, options: OutputOptions) {
        let pixels = UInt64(max(0, height)) * UInt64(max(0, width))
        let values = pixels * UInt64(max(1, classes))
        let kinds = options.kinds
        exact = kinds.contains(.npy) ? 128 + 4 * values : 0
        // A pyramid adds at most a third (each level a quarter of the one before).
        let pyramid = values * UInt64(dtype.size) * 4 / 3
        var most = exact + pyramid  // the map store (the zarr output, or the run's temporary one)
        if kinds.contains(.tiff) { most += pyramid }
        let pngBytes = UInt64(options.bitDepth > 8 ? 2 : 1)
        if kinds.contains(.prob) {
            most += pixels * pngBytes * UInt64(options.resolvedClasses(classCount: classes).count)
        }
        if kinds.contains(.labels) { most += pixels * (classes > 256 ? 2 : 1) }
        if kinds.contains(.overlay) { most += pixels * 3 }
        atMost = most
    }

    /// Bytes free for this user on the file system holding `directory`, or nil if unknown.
    static func free(_ directory: String) -> UInt64? {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Throws when the exact need is more than `free`; a warning (to log) when the
    /// uncompressed need is; nil when everything fits.
    func check(free: UInt64, image: String, out: String) throws -> String? {
        if exact > free {
            throw OutputSpaceError(
                description:
                    "\(image): the .npy map alone needs \(Self.text(exact)), and the disk holding \(out) has "
                    + "\(Self.text(free)) free: free some space, give another --out, or leave npy out of --outputs "
                    + "(zarr and tiff are compressed)")
        }
        guard atMost > free else { return nil }
        return "\(image): the outputs need up to \(Self.text(atMost)) uncompressed and the disk holding \(out) has "
            + "\(Self.text(free)) free: compression usually saves much of it, but the run may fail at its last writes"
    }

    static func text(_ bytes: UInt64) -> String { SystemMemory.text(Int(min(bytes, UInt64(Int.max)))) }
}

struct OutputSpaceError: Error, CustomStringConvertible {
    let description: String
}

extension Run {
    /// Refuses an image whose `.npy` does not fit in `--out`'s free space; warns when its outputs
    /// might not, uncompressed.
    func checkSpace(size: Size2, classes: Int, options: OutputOptions, image: String, logger: Logger) throws {
        guard let free = OutputSpace.free(output.out) else { return }
        let need = OutputSpace(
            height: size.h, width: size.w, classes: classes, dtype: slide.dtype, options: options)
        if let warning = try need.check(free: free, image: image, out: output.out) { logger.warning("\(warning)") }
    }
}
