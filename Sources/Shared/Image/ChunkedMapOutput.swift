import Foundation
import Logging
import TesseraCore

/// Where a map computed tile by tile goes: each tile into a chunked store as it is
/// finished, then every requested output from that store. With the `zarr` output
/// the store is the OME-Zarr pyramid (built under a temporary name and renamed
/// into place when complete, so no partial store is ever presented as finished);
/// otherwise it is a raw temporary store of the exact float32 values that only feeds
/// the PNG, `.npy` and TIFF outputs and is removed after (with a pyramid when the TIFF
/// is asked for, whose samples are quantised to `dtype` as it is written). The whole
/// map is never in memory.
package final class ChunkedMapOutput {
    package let options: OutputOptions
    package let store: MapStore
    private let finalPath: String?
    /// The TIFF's sample type (`--dtype`), which a raw store does not hold.
    private let tiffDType: MapDType
    private var finished = false

    /// - Parameters:
    ///   - tile: the map's tile size, which is the store's chunk size (tiles must start on multiples of it).
    ///   - levels: pyramid levels of the zarr or TIFF output (the tile must be divisible by 2^(levels−1)).
    ///   - kept: the classes the store keeps (`--keep-classes`; tiles are still written with every class), or nil.
    package init(
        options: OutputOptions, classes: Int, height: Int, width: Int, tile: Int, dtype: MapDType = .float32,
        levels: Int = 1, kept: [Int]? = nil, micronsPerPixel: Double? = nil, micronsPerPixelY: Double? = nil,
        source: MapSource? = nil
    ) throws {
        self.options = options
        let keep = options.kinds.contains(.zarr)
        if keep { try MapStore.checkReplaceable(options.zarrPath) }
        let temporary = "\(options.directory)/.\(options.stem).\(keep ? "zarr" : "chunks").partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        // The TIFF without the zarr still gets its pyramid (verification audit 37 N4: one float32 page).
        let levelsKept = keep || options.kinds.contains(.tiff) ? levels : 1
        tiffDType = dtype
        let side = MapLayout.chunkSide(tile: tile, height: height, width: width, levels: levelsKept)
        let layout = try MapLayout(
            classes: kept?.count ?? classes, height: height, width: width, tileSize: side,
            dtype: keep ? dtype : .float32, levels: levelsKept,
            classNames: nil, compression: keep ? .blosc : .none, kept: kept, netClasses: classes,
            micronsPerPixel: micronsPerPixel, micronsPerPixelY: micronsPerPixelY, source: source)
        store = try MapStore.create(at: temporary, layout: layout)
        finalPath = keep ? options.zarrPath : nil
    }

    /// Stores one finished tile (its rect on the tile grid, `classes × h × w` values).
    package func write(_ rect: PixelRect, values: ProbabilityMap) throws {
        try values.data.withUnsafeBufferPointer { _ = try store.write(rect: rect, values: $0) }
    }

    /// Completes the store and writes every output from it; returns the paths written.
    /// `image` is the input (for the overlay); `damaged`, the map tiles left empty because
    /// their input was damaged (recorded in the zarr's attributes).
    @discardableResult
    package func finish(
        image: (any RegionSource)?, logger: Logger? = nil, damaged: [PixelRect] = []
    ) throws -> [String] {
        if let joined = try store.finish(damaged: damaged) { logger?.info("map store: \(joined)") }
        let finalPath = finalPath
        let moveIntoPlace = {
            guard let finalPath else { return }
            try MapStore.checkReplaceable(finalPath)  // it may have appeared while mapping
            try? FileManager.default.removeItem(atPath: finalPath)
            guard rename(self.store.path, finalPath) == 0 else {
                throw MapStoreError(
                    .io, path: finalPath, detail: "cannot move the finished store into place: \(errnoText())")
            }
            self.finished = true
        }
        let written: [String]
        do {
            // The zarr first, then the files written from it: all or none of them replace earlier ones.
            written = try Self.export(
                store, image: image, options: options, tiffDType: tiffDType, logger: logger, beforeMove: moveIntoPlace)
        } catch  where finalPath != nil && !finished {
            // The other outputs failed (a full disk): the finished zarr, hours of computing for a slide, is kept, as
            // the embedded coordinator keeps it (review 32 R6: it was removed). The files of the names this run
            // writes go (they do not match the new map), and, when it replaced a map, every output of that map, as a
            // finished run does (review 33: every output of the image went, whatever was replaced).
            let replacing = FileManager.default.fileExists(atPath: finalPath!)
            guard (try? moveIntoPlace()) != nil else { throw error }
            let classes =
                options.classes ?? store.layout.kept
                ?? OutputOptions.defaultClasses(classCount: store.layout.netClasses)
            let earlier = Set(
                options.singleFiles(probabilityClasses: classes).filter(OutputOptions.isFileOrLink)
                    + (replacing ? OutputOptions.existingOutputs(directory: options.directory, stem: options.stem) : [])
            )
            for file in earlier { try? FileManager.default.removeItem(atPath: file) }
            throw MapKeptError(map: finalPath!, error: error, removed: earlier.sorted())
        }
        if let finalPath { return [finalPath] + written }
        try? FileManager.default.removeItem(atPath: store.path)
        finished = true
        return written
    }

    /// Writes every output of `options` except the store itself (the TIFF export,
    /// PNGs, `.npy`) from a finished store, band by band, and moves them into place
    /// together once all are written (`OutputStaging`), after `beforeMove`; returns the
    /// paths written. `image` is the input (for the overlay; only opened when that is
    /// asked for); `tiffDType`, the TIFF's sample type when not the store's (a float32
    /// store's values are quantised).
    package static func export(
        _ store: MapStore, image: (any RegionSource)?, options: OutputOptions, tiffDType: MapDType? = nil,
        logger: Logger? = nil, beforeMove: () throws -> Void = {}
    ) throws -> [String] {
        guard !options.kinds.subtracting([.zarr]).isEmpty else {
            try beforeMove()
            return []
        }
        return try OutputStaging.write(options, beforeMove: beforeMove) { staged in
            var written: [String] = []
            if options.kinds.contains(.tiff) {
                try TIFFMapExport.write(store: store, to: staged.tiffPath, dtype: tiffDType)
                written.append(staged.tiffPath)
            }
            if !options.kinds.subtracting([.zarr, .tiff]).isEmpty {
                written += try writeOutputs(map: store, image: image, options: staged, logger: logger)
            }
            return written
        }
    }

    /// Removes the unfinished store (after a failure): nothing half-written is left.
    package func abandon() {
        guard !finished else { return }
        try? FileManager.default.removeItem(atPath: store.path)
    }
}

/// The outputs of a map failed after its zarr was complete: the zarr is in place at `map` (`removed`: the earlier
/// outputs of the image's names that were beside it).
package struct MapKeptError: Error, CustomStringConvertible {
    package let map: String
    package let error: any Error
    package let removed: [String]
    package var description: String { "\(error)" }
}

extension MapStore: MapRowSource {
    package var classes: Int { layout.classes }
    package var height: Int { layout.height }
    package var width: Int { layout.width }
    package func rows(_ y: Range<Int>) throws -> [Float] { try rows(level: 0, y: y) }
    /// One row of chunks at a time (each chunk decoded once) when that fits 64 MiB;
    /// else an equal part of one (each chunk decoded once per part).
    package var keptClasses: [Int]? { layout.kept }
    package var netClasses: Int { layout.netClasses }
    package var preferredBandRows: Int? {
        let band = layout.classes * layout.tileSize * layout.width * 4
        let parts = (band + (64 << 20) - 1) / (64 << 20)
        return max(1, (layout.tileSize + parts - 1) / parts)
    }
}
