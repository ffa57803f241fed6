import Foundation
import TesseraCore
import TesseraImage
import TesseraPlan

/// An upload job's map, assembled one map tile at a time: each task belongs to one
/// map tile (`TilePlan.tasks(forTile:…)`); when a tile's last task is in, its values
/// go into a raw float32 store (one chunk per tile, on disk) and its assembler is
/// dropped. Only the tiles with results still missing are in memory, and the
/// outputs are written from the store band by band.
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

    /// Plans the tasks of an `image`-sized map (tiles in row-major order, each
    /// tile's tasks together) and creates the raw store at `path` (replacing one there).
    static func plan(
        mode: MapMode, image: Size2, tile: Int, geometry: TaskGeometry, classes: Int, storePath: String
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
        try? FileManager.default.removeItem(atPath: storePath)
        let side = tiles.first.map { max($0.height, $0.width) } ?? tile
        let layout = try MapLayout(
            classes: classes, height: image.h, width: image.w, tileSize: side, compressed: false)
        let map = UploadMap(
            store: try MapStore.create(at: storePath, layout: layout), tiles: tiles, tileOfTask: tileOfTask,
            remaining: remaining, mode: mode, image: image, classes: classes, stride: geometry.stride)
        return (map, tasks)
    }

    private init(
        store: MapStore, tiles: [PixelRect], tileOfTask: [Int], remaining: [Int], mode: MapMode, image: Size2,
        classes: Int, stride: Size2
    ) {
        self.store = store
        self.tiles = tiles
        self.tileOfTask = tileOfTask
        self.remaining = remaining
        self.mode = mode
        self.image = image
        self.classes = classes
        self.stride = stride
    }

    /// Places task `index`'s result; writes its map tile to the store once complete.
    /// If that write fails, the task counts as missing again and the error is thrown.
    /// Returns whether a map tile was written.
    @discardableResult
    mutating func add(_ index: Int, _ task: TileTask, values: [Float], rows: Int, cols: Int) throws -> Bool {
        let t = tileOfTask[index]
        var assembler =
            assemblers[t]
            ?? TileAssembler(tile: tiles[t], mode: mode, image: image, classes: classes, stride: stride)
        values.withUnsafeBufferPointer { assembler.add(task, result: $0, classes: classes, rows: rows, cols: cols) }
        remaining[t] -= 1
        if remaining[t] > 0 {
            assemblers[t] = assembler
            return false
        }
        let tile = assembler.finish()
        do {
            try tile.data.withUnsafeBufferPointer { _ = try store.write(rect: tiles[t], values: $0) }
        } catch {
            // Not written (a full disk): the tile keeps the results it has and waits for
            // this task again (placing a task's values twice gives the same tile).
            assemblers[t] = assembler
            remaining[t] = 1
            throw error
        }
        assemblers[t] = nil
        return true
    }
}
