import Foundation
import Logging
import TesseraCore
import TesseraImage
import TesseraPlan

extension Run {
    /// Before the first image: refuses a run whose maps cannot fit in `--out`'s free space (every
    /// image's `.npy` and temporary store together), and warns when their outputs might not fit
    /// uncompressed.
    func checkSpace(plan: ModelPlan, memoryBudget: Int, logger: Logger) throws {
        guard let free = freeBytes(output.out) else { return }
        let kept = try slide.keptClasses(netClasses: plan.classes)
        var total: OutputSpace?
        for path in images {
            let read = {
                try ImageInput.header(
                    path: path, image: slide.image, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels)
            }
            // With --keep-going an unreadable image fails in its turn, not here.
            guard let header = keepGoing ? try? read() : try read() else { continue }
            let options = try output.options(
                forImage: path, image: slide.image ?? 1, isPNG: header.format == .png, keeping: kept != nil)
            let tile =
                try job.tile
                ?? plan.defaultTile(
                    mode: job.mode, image: Size2(header.height, header.width), memoryBudget: memoryBudget)
            let need = OutputSpace(
                height: header.height, width: header.width, classes: kept?.count ?? plan.classes, dtype: slide.dtype,
                options: options, tile: tile)
            total = total.map { $0 + need } ?? need
        }
        guard let total else { return }
        let what = images.count == 1 ? images[0] : "the \(images.count) images"
        if let warning = try total.check(free: free, image: what, out: output.out) { logger.warning("\(warning)") }
    }
}

extension Submit {
    /// `submit --wait` of upload jobs, before the first upload: refuses jobs whose outputs cannot
    /// fit in `--out` once downloaded (every image's `.npy` together), and warns when they might
    /// not uncompressed; hours of cluster time would otherwise end in a failed download.
    func checkDownloadSpace(plan: ModelPlan, kept: [Int]?, logger: Logger) throws {
        guard let free = freeBytes(output.out) else { return }
        var total: OutputSpace?
        for path in images {
            let header = try ImageInput.header(path: path, level: nil, mpp: nil, maxPixels: .max)
            var need = OutputSpace(
                height: header.height, width: header.width, classes: kept?.count ?? plan.classes, dtype: .float32,
                options: try output.options(forImage: path, keeping: kept != nil))
            need.temporary = 0  // the coordinator's store holds the map; the client downloads files
            total = total.map { $0 + need } ?? need
        }
        guard let total else { return }
        let what = images.count == 1 ? images[0] : "the \(images.count) images"
        let remedy =
            "free some space, give another --out, or submit without --wait and fetch the outputs later "
            + "(tessera-coordinator fetch JOB --out DIR); --outputs can leave out the .npy"
        if let warning = try total.check(free: free, image: what, out: output.out, remedy: remedy) {
            logger.warning("\(warning)")
        }
    }
}
