import Foundation
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraPlan
import TesseraWire

/// Reads the next shared-storage tile's input region while the current tile computes,
/// so a fast device does not wait for the image (JPEG tiles of a slide decode at
/// about the rate a GPU maps them). One region ahead, for tiles that are one task
/// (`dense`, `fast`; a `shift` tile's passes are read as they run). The region
/// sources are safe to read from two threads (TIFF handles are pooled, OpenSlide's
/// are locked), so the compute thread's own source is read here too. A failed read
/// is forgotten: the compute thread reads again and reports the error.
final class RegionPrefetcher: Sendable {
    private let queue = DispatchQueue(label: "tessera.worker.prefetch")
    private let slot = Locked<(ref: Wire.TaskRef, attempt: UInt32, region: PrefetchedRegion?)?>(nil)

    /// Starts reading `spec`'s input from `image`, if its tile is one task of `engine`'s.
    func start(_ spec: Wire.TileTaskSpec, image: any RegionSource, engine: MapEngine) {
        let rect = TaskCodec.pixelRect(spec.tile)
        let size = Size2(image.height, image.width)
        let tasks = TilePlan.tasks(forTile: rect, mode: TaskCodec.mode(spec.mode), image: size, geometry: engine.tasks)
        guard tasks.count == 1 else { return }
        let padded = engine.tasks.inputRect(tasks[0])
        let halfPatch = engine.tasks.halfPatch
        let (slot, ref, attempt) = (slot, spec.ref, spec.attempt)
        slot.withLock { $0 = (ref, attempt, nil) }
        queue.async {
            let region = try? PixelRegion(source: image, paddedRect: padded, halfPatch: halfPatch)
            slot.withLock { s in
                if s?.ref == ref && s?.attempt == attempt {
                    s?.region = region.map { PrefetchedRegion(rect: padded, region: $0) }
                }
            }
        }
    }

    /// The region read ahead for `spec` (waiting for its read to finish), or nil.
    func take(_ spec: Wire.TileTaskSpec) -> PrefetchedRegion? {
        guard slot.withLock({ $0?.ref == spec.ref && $0?.attempt == spec.attempt }) else { return nil }
        queue.sync {}
        return slot.withLock { s in
            defer { s = nil }
            return s?.ref == spec.ref && s?.attempt == spec.attempt ? s?.region : nil
        }
    }
}
