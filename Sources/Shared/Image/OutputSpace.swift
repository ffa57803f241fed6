import Foundation
import TesseraCore

/// What a map's outputs need on disk, checked against the free space of `--out` before
/// anything is computed: a slide's `.npy` alone can be tens of gigabytes, and a run that
/// finds out after hours of computing, at the last write, has wasted them.
package struct OutputSpace: Equatable {
    /// Bytes the outputs that stay need whatever the data: the `.npy` (float32, uncompressed).
    package var exact: UInt64
    /// Bytes they need at most: every output uncompressed, the chunked ones' pyramids included.
    /// Compressed outputs usually need far less.
    package var atMost: UInt64
    /// The run's temporary map store in `--out` while the image's outputs are written from it
    /// (float32, uncompressed, one level, or a pyramid for the TIFF), unless the map is kept as
    /// zarr; removed after the image.
    package var temporary: UInt64

    /// The need of a `classes` × `height` × `width` map written as `options` says, its
    /// chunked store holding `dtype` values (`--dtype`).
    /// `tile`: the map's tile, when known: the temporary store's edge chunks are written whole, their padding
    /// included (audit 55 F4: 18 MiB counted for a 1536² map whose store took 50 MB at tile 1252).
    package init(height: Int, width: Int, classes: Int, dtype: MapDType, options: OutputOptions, tile: Int? = nil) {
        let pixels = UInt64(max(0, height)) * UInt64(max(0, width))
        let values = pixels * UInt64(max(1, classes))
        let kinds = options.kinds
        let zarr = kinds.contains(.zarr)
        exact = kinds.contains(.npy) ? 128 + 4 * values : 0
        var stored = values
        if let tile, tile > 0 {
            let side = MapLayout.chunkSide(tile: tile, height: height, width: width, levels: 1)
            let padded = { (n: Int) in UInt64((max(0, n) + side - 1) / side * side) }
            stored = padded(height) * padded(width) * UInt64(max(1, classes))
        }
        temporary = zarr ? 0 : kinds.contains(.tiff) ? 4 * stored * 4 / 3 : 4 * stored
        // A pyramid adds at most a third (each level a quarter of the one before).
        let pyramid = values * UInt64(dtype.size) * 4 / 3
        var most = exact + (zarr ? pyramid : 0)
        if kinds.contains(.tiff) { most += pyramid }
        let pngBytes = UInt64(options.bitDepth > 8 ? 2 : 1)
        if kinds.contains(.prob) {
            most += pixels * pngBytes * UInt64(options.resolvedClasses(classCount: classes).count)
        }
        if kinds.contains(.labels) { most += pixels * (classes > 256 ? 2 : 1) }
        if kinds.contains(.overlay) { most += pixels * 3 }
        atMost = most
    }

    package init(exact: UInt64, atMost: UInt64, temporary: UInt64) {
        self.exact = exact
        self.atMost = atMost
        self.temporary = temporary
    }

    /// Images mapped one after another: their outputs add up; one temporary store at a time.
    package static func + (a: OutputSpace, b: OutputSpace) -> OutputSpace {
        OutputSpace(exact: a.exact + b.exact, atMost: a.atMost + b.atMost, temporary: max(a.temporary, b.temporary))
    }

    /// Throws when the exact need (temporary store included) is more than `free`; a warning (to log)
    /// when the uncompressed need is; nil when everything fits.
    /// `remedy`: what the refusal suggests.
    package func check(free: UInt64, image: String, out: String, remedy: String? = nil) throws -> String? {
        let (certain, most) = (exact + temporary, atMost + temporary)
        if certain > free {
            let (need, have) = Self.texts(certain, free)
            var parts: [String] = []
            if exact > 0 { parts.append("\(Self.text(exact)) for the .npy") }
            if temporary > 0 { parts.append("\(Self.text(temporary)) for the temporary map store it is written from") }
            throw OutputSpaceError(
                description:
                    "\(image): the map needs \(need) in \(out) (\(parts.joined(separator: " and "))), and that disk "
                    + "has \(have) free: "
                    + (remedy
                        ?? "free some space, give another --out, or choose --outputs zarr (compressed, "
                        + "with no temporary store)"))
        }
        guard most > free else { return nil }
        let (upTo, have) = Self.texts(most, free)
        return "\(image): the outputs need up to \(upTo) uncompressed and the disk holding \(out) has "
            + "\(have) free: compression usually saves much of it, but the run may fail at its last writes"
    }

    /// Two sizes in words, in bytes when the rounded words would read the same.
    package static func texts(_ a: UInt64, _ b: UInt64) -> (String, String) {
        let (x, y) = (text(a), text(b))
        return x == y ? ("\(a) bytes", "\(b) bytes") : (x, y)
    }

    package static func text(_ bytes: UInt64) -> String { SystemMemory.text(Int(min(bytes, UInt64(Int.max)))) }
}

package struct OutputSpaceError: Error, CustomStringConvertible {
    package let description: String
}
