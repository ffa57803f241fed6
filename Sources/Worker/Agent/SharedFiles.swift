import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage

/// The images and map stores a worker's shared-storage tasks use, opened once and
/// kept (the few used last of each), and the rule for which paths it may touch: only under the
/// folders given with `--shared-root` (symbolic links resolved, so a link cannot
/// lead a task outside them).
struct SharedFiles {
    let roots: SharedRoots
    private var images = LRUCache<String, any RegionSource>(capacity: 4)
    /// PNGs, decoded whole (a PNG cannot be read a region at a time) into raw files in the temporary folder
    /// (`ImageInput.open(…, pngFolder:)`): up to 4 while they hold under `decodedBytes` together, the least recently used going first
    /// (always room for the one being opened). Counted with the slides' open files, 4 stayed whatever their size
    /// (memory audit 50 F3: 1 GB idle after four 8000² PNG jobs, 18 GB possible); a cache of two thrashed between
    /// three jobs' PNGs, each task decoding its image again (review: 1.6× slower).
    private var decoded = LRUCache<String, any RegionSource>(capacity: 4)
    /// A sixteenth of the machine's memory, from 512 MiB to 4 GiB.
    static let decodedBytes = min(4 << 30, max(512 << 20, Int(ProcessInfo.processInfo.physicalMemory / 16)))

    /// A decoded image's samples, in bytes.
    private static func bytes(width: Int, height: Int, channels: Int, bitDepth: Int) -> Int {
        width * height * channels * (bitDepth > 8 ? 2 : 1)
    }
    private static func bytes(_ s: any RegionSource) -> Int {
        bytes(width: s.width, height: s.height, channels: s.channels, bitDepth: s.bitDepth)
    }
    private var stores = LRUCache<String, MapStore>(capacity: 8)

    /// Where PNGs are decoded to.
    let temporaryFolder: String

    init(roots: [String], temporaryFolder: String = FileManager.default.temporaryDirectory.path) {
        self.roots = SharedRoots(roots)
        self.temporaryFolder = temporaryFolder
    }

    /// Image `image` (from 1) of the file at `path`, level `level`, opened once per (path, image, level).
    /// `warn` gets what the PNG reader warned of the image data when it is opened (a TIFF's notes reach
    /// the client from its header; a PNG's need the whole decode this does).
    /// The most pixels of a PNG a worker decodes (to disk) once its coordinator admitted it: 2^40, so that every
    /// size computed from it fits an Int (review 32 R1: unbounded, a forged 2^31 × 2^31 header would overflow).
    static let admittedPixels = 1 << 40

    mutating func image(
        _ path: String, image: Int, level: Int, warn: (String) -> Void = { _ in }
    ) throws -> any RegionSource {
        let key = "\(image):\(level):\(Self.identity(path)):\(path)"
        if let open = images.get(key) ?? decoded.get(key) { return open }
        let resolved = try allowed(path, "image")
        let isPNG = try SlideFormat.detect(path: resolved) == .png
        var need = 0
        if isPNG {
            // Room is made before the decode, so no more than the budget's worth is ever held at once.
            let header = try ImageInput.header(path: resolved, maxPixels: Self.admittedPixels)
            need = Self.bytes(
                width: header.width, height: header.height, channels: header.channels, bitDepth: header.bitDepth)
            // Least recently used first (`get` in that order keeps the order).
            var kept = decoded.keys.compactMap { key in decoded.get(key).map { (key, $0) } }
            while !kept.isEmpty, kept.reduce(need, { $0 + Self.bytes($1.1) }) > Self.decodedBytes {
                kept.removeFirst()
            }
            decoded = LRUCache(capacity: 4)
            for (key, source) in kept { decoded.insert(source, for: key) }
        }
        // A PNG's size was admitted by the coordinator (`serve --max-pixels`, `run --max-pixels`), which this
        // worker follows; it is decoded to disk, band by band, so its size costs no memory here (review 31 F9:
        // the built-in 1.5 Gpx refused what the coordinator had allowed). Held in memory (TMPDIR without room),
        // the built-in limit holds.
        let opened = try ImageInput.open(
            path: resolved, image: image, level: level == 0 ? nil : level, maxPixels: Self.admittedPixels,
            pngFolder: temporaryFolder, memoryMaxPixels: PNGReader.defaultMaxPixels)
        if opened.format != .png, opened.level != level {
            throw ClusterError("\(path) has no level \(level)" + (image == 1 ? "" : " in image \(image)"))
        }
        if opened.format == .png {
            opened.notes.forEach(warn)
            decoded.insert(opened.source, for: key)
        } else {
            images.insert(opened.source, for: key)
        }
        return opened.source
    }

    /// The file at `path` as the cache tells it apart: device, inode, size and modification time. A file
    /// replaced at the same path (an image written again between two jobs) is opened again, not served from
    /// what was read of the old one (review 29b L5).
    private static func identity(_ path: String) -> String { FileIdentity(path: path).map { "\($0)" } ?? "?" }

    /// Drops the decoded PNGs (the worker is idle: they would hold memory for nothing).
    mutating func dropDecoded() { decoded = LRUCache(capacity: 4) }

    /// The map store at `path`, opened once.
    mutating func store(_ path: String) throws -> MapStore {
        if let open = stores.get(path) { return open }
        let store = try MapStore.open(at: allowed(path, "map store"))
        stores.insert(store, for: path)
        return store
    }

    /// `path` resolved, if it lies under one of the roots; else a clear refusal.
    private func allowed(_ path: String, _ what: String) throws -> String {
        guard !roots.roots.isEmpty else {
            throw ClusterError(
                "this worker takes no shared-storage tasks: start it with --shared-root FOLDER "
                    + "(the storage it shares with the coordinator)")
        }
        guard let resolved = roots.contains(path) else {
            throw ClusterError(
                "the \(what) \(path) is outside this worker's --shared-root (\(roots.given.joined(separator: ", ")))")
        }
        return resolved
    }
}
