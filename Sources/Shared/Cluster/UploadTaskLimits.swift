import TesseraCore
import TesseraPlan
import TesseraWire

/// What an upload job's tasks must fit: each task's input region travels in one message (the wire's
/// per-task pixel limit) and each result comes back in one (the worker endpoint's message limit).
/// The coordinator checks every task when it plans the job; `submit` checks the first tile's (the
/// largest) before it uploads, since the coordinator plans only once the whole image is in (operator
/// audit: a --tile too large was refused after the image had travelled).
package enum UploadTaskLimits {
    /// Why the upload job of `tasks` (tile side `tile`) cannot run, or nil. `maxResultBytes`: the
    /// coordinator's worker-message limit (nil: not known here, not checked).
    package static func problem(
        _ tasks: some Sequence<TileTask>, geometry g: TaskGeometry, tile: Int, classes: Int, maxResultBytes: Int?
    ) -> String? {
        let limit = WireLimits.default.maxPixelsPerTask
        var largest = 0
        for task in tasks {
            let input = g.inputRect(task)
            if input.height * input.width > limit {
                return "--tile \(tile) is too large for an upload job: a task reads a \(input.width)×\(input.height) "
                    + "region (its tile and the net's margin), more than the \(limit) pixels a task may send: give "
                    + "a smaller --tile, or map the image with a shared-storage job (--shared)"
            }
            let out = g.outputSize(task)
            largest = max(largest, out.h * out.w)
        }
        let bytes = largest * classes * 4 + 256
        if let maxResultBytes, bytes > maxResultBytes {
            return "--tile \(tile) is too large for an upload job: a result of \(bytes >> 20) MiB exceeds the "
                + "worker endpoint's limit of \(maxResultBytes >> 20) MiB (serve --max-worker-message-mib; or a "
                + "smaller --tile, or a shared-storage job)"
        }
        return nil
    }

    /// `problem` for the first map tile's tasks (no other tile is larger) of an `image`-sized upload job.
    package static func problem(
        mode: MapMode, image: Size2, tile: Int, geometry g: TaskGeometry, classes: Int, maxResultBytes: Int?
    ) -> String? {
        let side = mode == .shift ? TilePlan.roundUp(tile, TilePlan.shiftUnit(g.stride)) : tile
        let first = PixelRect(y: 0, x: 0, height: min(side, image.h), width: min(side, image.w))
        let tasks = TilePlan.tasks(forTile: first, mode: mode, image: image, geometry: g)
        return problem(tasks, geometry: g, tile: tile, classes: classes, maxResultBytes: maxResultBytes)
    }
}
