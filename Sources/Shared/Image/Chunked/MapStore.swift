import Foundation
import TesseraCore

/// A probability map as an OME-Zarr store (Zarr v2 arrays, OME-NGFF 0.4
/// multiscales, axes c, y, x), written tile by tile by the workers that computed
/// the tiles: each tile writes its own piece of every pyramid level, atomically,
/// and never reads or merges anything, so writes of different tiles may run on
/// any threads or machines at once. Tiles never written read as the dtype's fill
/// value. The store is presented as an image only by `finish()`, which first joins
/// the small pieces of the upper levels into chunks (`MapLayout`). Layout on disk:
/// see `StoreMetadata`.
package final class MapStore: Sendable {
    /// The store's folder.
    package let path: String
    package let layout: MapLayout
    /// fsync each chunk and its folder before a write returns (slower; for stores that must survive power loss).
    package let durable: Bool

    private init(path: String, layout: MapLayout, durable: Bool) {
        self.path = path
        self.layout = layout
        self.durable = durable
    }

    /// Creates an empty store at `path` (a new or empty folder; `.alreadyExists`
    /// if it holds anything, so a job never overwrites another's map: resume with `open`).
    /// `besides`: files the folder may already hold (a coordinator's owner record, written and locked
    /// before the store so that the folder is never seen unowned).
    package static func create(
        at path: String, layout: MapLayout, durable: Bool = false, besides: Set<String> = []
    ) throws -> MapStore {
        if let entries = FileIO.list(path), entries.contains(where: { !besides.contains($0) }) {
            throw MapStoreError(.alreadyExists, path: path, detail: "the folder is not empty (open it to resume)")
        }
        try FileIO.makeDirectories(path)
        let store = MapStore(path: path, layout: layout, durable: durable)
        try AtomicFile.write(StoreMetadata.zgroup(), to: "\(path)/.zgroup", durable: durable)
        for level in 0..<layout.levels {
            // Every row folder now, so concurrent tile writes never race to create one.
            for row in 0..<layout.tileGrid.h {
                try FileIO.makeDirectories("\(path)/\(layout.pieceFolder(level))/\(row)")
            }
            if !layout.isTileLevel(level) {
                for row in 0..<layout.storedChunkGrid(level).h {
                    try FileIO.makeDirectories("\(path)/\(level)/0/\(row)")
                }
            }
            try AtomicFile.write(
                StoreMetadata.zarray(layout, level: level), to: "\(path)/\(level)/.zarray",
                durable: durable)
        }
        try AtomicFile.write(StoreMetadata.zattrs(layout, complete: false), to: "\(path)/.zattrs", durable: durable)
        if durable { AtomicFile.syncDirectory(path) }
        return store
    }

    /// Throws unless `path` is free or holds a map store this code wrote (finished or
    /// not): what a new map may replace. A user's folder or file that happens to have
    /// the map's name is never deleted.
    package static func checkReplaceable(_ path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
        if isDirectory.boolValue, let bytes = try? FileIO.read("\(path)/.zattrs"),
            (try? StoreMetadata.parse(zattrs: bytes, path: path)) != nil
        {
            return
        }
        throw MapStoreError(
            .alreadyExists, path: path,
            detail: "it is not a Tessera map, so it is not replaced: move it away or choose another --out")
    }

    /// Opens an existing store (finished or not) to resume, read or export it.
    /// Throws `.notAStore` if the folder does not hold a store this code wrote,
    /// or a level's `.zarray` disagrees with the recorded layout; `.io` if there is nothing at `path`.
    package static func open(at path: String, durable: Bool = false) throws -> MapStore {
        guard let attributes = try FileIO.read("\(path)/.zattrs") else {
            // A path that is not there is named so (user review: "no .zattrs" for a mistyped path).
            let there = FileManager.default.fileExists(atPath: path)
            throw MapStoreError(
                there ? .notAStore : .io, path: path, detail: there ? "no .zattrs" : "no such file or folder")
        }
        let layout = try StoreMetadata.parse(zattrs: attributes, path: path).layout
        for level in 0..<layout.levels {
            let arrayPath = "\(path)/\(level)/.zarray"
            guard let bytes = try FileIO.read(arrayPath) else {
                throw MapStoreError(.notAStore, path: arrayPath, detail: "level \(level) is missing")
            }
            if let mismatch = StoreMetadata.zarrayMismatch(bytes, layout: layout, level: level) {
                throw MapStoreError(.notAStore, path: arrayPath, detail: mismatch)
            }
        }
        return MapStore(path: path, layout: layout, durable: durable)
    }

    /// Whether `finish()` has completed (read from disk each time, so another
    /// process's finish is seen).
    package var isFinished: Bool {
        guard let bytes = try? FileIO.read("\(path)/.zattrs"),
            let parsed = try? StoreMetadata.parse(zattrs: bytes, path: path)
        else { return false }
        return parsed.complete
    }

    /// Presents the store as complete: joins the upper levels' pieces into their
    /// chunks (`joinUpperLevels`), then rewrites the group's `.zattrs` with the OME
    /// multiscales and `tessera.complete`, then removes the pieces. Call once every
    /// tile is written (tiles left out stay fill); a job that crashes before this
    /// never looks finished, and finishing again after a crash gives the same store.
    /// `damaged`: map tiles left empty because their input was damaged, recorded in
    /// `.zattrs` (`StoreMetadata.zattrs`). `submittedBy`: the key whose job wrote the map (a cluster's
    /// shared-storage job; "anonymous" without CURVE), recorded as `tessera.submitted_by`. Returns what was
    /// joined (nil: nothing to join, or finished before).
    @discardableResult
    package func finish(damaged: [PixelRect] = [], submittedBy: String? = nil) throws -> JoinSummary? {
        var joined: JoinSummary?
        if !isFinished {
            joined = try joinUpperLevels()
            try AtomicFile.write(
                StoreMetadata.zattrs(
                    layout, complete: true, emptyTiles: damaged, notComputed: notComputedTiles(),
                    submittedBy: submittedBy),
                to: "\(path)/.zattrs", durable: true)
        }
        removePieceFolders()
        return joined
    }

    /// The key recorded as having written the finished map at `path` (`tessera.submitted_by`; nil: none recorded).
    package static func submittedBy(_ path: String) -> String? {
        guard let bytes = try? FileIO.read("\(path)/.zattrs"),
            let root = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let tessera = root["tessera"] as? [String: Any]
        else { return nil }
        return tessera["submitted_by"] as? String
    }

    /// Per level-0 tile (row-major): whether it has no chunk, so no value was computed for it (a computed
    /// tile's chunk is always written, even when it equals the fill).
    func notComputedTiles() -> [Bool] {
        let rows = (layout.height + layout.tileSize - 1) / layout.tileSize
        let columns = (layout.width + layout.tileSize - 1) / layout.tileSize
        var flags = [Bool](repeating: true, count: rows * columns)
        for row in 0..<rows {
            for name in FileIO.list("\(path)/\(layout.pieceFolder(0))/\(row)") ?? [] {
                if let column = Int(name), column >= 0, column < columns { flags[row * columns + column] = false }
            }
        }
        return flags
    }

    /// Per level-0 tile (row-major), whether the finished map records it as never computed
    /// (`tessera.not_computed`); empty when it records none (every tile computed).
    func notComputedFlags() -> [Bool] {
        guard let bytes = try? FileIO.read("\(path)/.zattrs") else { return [] }
        return StoreMetadata.notComputedFlags(zattrs: bytes)
    }

    /// The file of `tile`'s piece of `level` (its chunk on a tile level).
    package func chunkPath(_ tile: TileIndex, level: Int) -> String { "\(path)/\(layout.chunkKey(tile, level: level))" }

    /// The file of chunk (row, column) of `level` in the Zarr array.
    func storedChunkPath(row: Int, column: Int, level: Int) -> String {
        "\(path)/\(layout.storedChunkKey(row: row, column: column, level: level))"
    }
}
