import Foundation
import TesseraCore
import TesseraImage
import TesseraPlan

/// An upload job's map, assembled one map tile at a time: each task belongs to one
/// map tile (`TilePlan.tasks(forTile:…)`); when a tile's last task is in, `add`
/// hands the tile's values back to be written (off the loop thread) into a raw
/// float32 store, one chunk per tile, and drops its assembler. Only the tiles with
/// results still missing are in memory, and the outputs are written from the store
/// band by band. The store is also what a restarted coordinator resumes from: the
/// chunks whose receipts are in the job's journal (`ReceiptJournal`) are kept.
struct UploadMap {
    let store: MapStore
    /// The map tiles, and the map tile of each task.
    let tiles: [PixelRect]
    let tileOfTask: [Int]
    /// Tasks still missing per map tile.
    private var remaining: [Int]
    private var assemblers: [Int: TileAssembler] = [:]
    private let mode: MapMode
    private let image: Size2
    private let classes: Int
    private let stride: Size2
    private let pads: Bool

    /// Plans the tasks of an `image`-sized map (tiles in row-major order, each
    /// tile's tasks together) and creates the raw store at `path` (replacing one
    /// there), or with `resume` opens the one there (creating it if it is missing or
    /// is not the store this plan needs).
    static func plan(
        mode: MapMode, image: Size2, tile: Int, geometry: TaskGeometry, classes: Int, storePath: String,
        resume: Bool = false
    ) throws -> (UploadMap, [TileTask]) {
        let tiles = TilePlan.mapTiles(mode: mode, image: image, tile: tile, stride: geometry.stride)
        var tasks: [TileTask] = []
        var tileOfTask: [Int] = []
        var remaining: [Int] = []
        for (i, rect) in tiles.enumerated() {
            let own = TilePlan.tasks(forTile: rect, mode: mode, image: image, geometry: geometry)
            tasks += own
            tileOfTask += Array(repeating: i, count: own.count)
            remaining.append(own.count)
        }
        let side = tiles.first.map { max($0.height, $0.width) } ?? tile
        let layout = try MapLayout(
            classes: classes, height: image.h, width: image.w, tileSize: side, compression: .none)
        var store: MapStore? = nil
        if resume, let found = try? MapStore.open(at: storePath), found.layout == layout {
            found.removeInterruptedWrites()
            store = found
        }
        if store == nil {
            try? FileManager.default.removeItem(atPath: storePath)
            store = try MapStore.create(at: storePath, layout: layout)
        }
        let map = UploadMap(
            store: store!, tiles: tiles, tileOfTask: tileOfTask,
            remaining: remaining, mode: mode, image: image, classes: classes, stride: geometry.stride,
            pads: geometry.pads)
        return (map, tasks)
    }

    private init(
        store: MapStore, tiles: [PixelRect], tileOfTask: [Int], remaining: [Int], mode: MapMode, image: Size2,
        classes: Int, stride: Size2, pads: Bool
    ) {
        self.store = store
        self.tiles = tiles
        self.tileOfTask = tileOfTask
        self.remaining = remaining
        self.mode = mode
        self.image = image
        self.classes = classes
        self.stride = stride
        self.pads = pads
    }

    /// A finished map tile, to be written with `write`.
    struct FinishedTile: Sendable {
        let index: Int
        let rect: PixelRect
        let values: [Float]
        var bytes: Int { values.count * 4 }
    }

    /// Places task `index`'s result; returns its map tile once the tile is complete.
    mutating func add(_ index: Int, _ task: TileTask, values: [Float], rows: Int, cols: Int) -> FinishedTile? {
        let t = tileOfTask[index]
        if remaining[t] == 1, assemblers[t] == nil, mode == .dense || mode == .naive, task.rect == tiles[t],
            rows == task.rect.height, cols == task.rect.width, values.count == classes * rows * cols
        {
            // A tile of one task that covers it: the result is the tile, no copy to assemble.
            remaining[t] = 0
            return FinishedTile(index: t, rect: tiles[t], values: values)
        }
        var assembler =
            assemblers[t]
            ?? TileAssembler(tile: tiles[t], mode: mode, image: image, classes: classes, stride: stride, pads: pads)
        values.withUnsafeBufferPointer { assembler.add(task, result: $0, classes: classes, rows: rows, cols: cols) }
        remaining[t] -= 1
        if remaining[t] > 0 {
            assemblers[t] = assembler
            return nil
        }
        assemblers[t] = nil
        return FinishedTile(index: t, rect: tiles[t], values: assembler.finish().data)
    }

    /// Writes a finished tile's chunk (any thread): what the journal records.
    static func write(_ tile: FinishedTile, to store: MapStore) throws -> TileReceipt {
        try tile.values.withUnsafeBufferPointer { try store.write(rect: tile.rect, values: $0) }
    }

    /// The task indices of every map tile.
    var tasksByTile: [[Int]] {
        var groups = [[Int]](repeating: [], count: tiles.count)
        for (task, t) in tileOfTask.enumerated() { groups[t].append(task) }
        return groups
    }

    /// Map tile `t` is in the store already (a resume checked its chunks): none of its tasks is needed.
    mutating func restored(tile t: Int) {
        remaining[t] = 0
        assemblers[t] = nil
    }
}
