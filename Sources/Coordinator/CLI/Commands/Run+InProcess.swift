import ArgumentParser
import CoordinatorService
import Foundation
import Logging
import TesseraCUDA
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// `run --in-process`: each image mapped by this process's engine, tile by tile,
/// into the outputs (and, for nets that are not exact, checked against the classifier).
extension Run {
    func runInProcess(
        _ mapper: LocalMapper, loaded: LoadedModel, plan: ModelPlan, interruption: RunInterruption, logger: Logger
    ) throws {
        let progress = Progress(stream: stderr)
        try forEachImage(interruption: interruption, logger: logger) { path in
            let identity = FileIdentity(path: path)
            // A PNG is decoded to a file without a name in TMPDIR, not into memory (memory audit 50).
            let opened = try ImageInput.open(
                path: path, image: slide.image, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels,
                pngFolder: FileManager.default.temporaryDirectory.path)
            let image = opened.source
            for note in opened.notes { logger.warning("\(note)", metadata: ["image": "\(path)"]) }
            if image.channels == 1 && loaded.net.inputChannels == 3 {
                logger.info("gray image expanded to 3 channels", metadata: ["image": "\(path)"])
            }
            if let warning = try ImageInput.header(
                path: path, image: slide.image, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels
            )
            .sixteenBitWarning(path: path, rawScale: mapper.preprocessing.rawScale) {
                logger.warning("\(warning)")
            }
            let kept = try slide.keptClasses(netClasses: plan.classes)
            let options = try output.options(
                forImage: path, image: slide.image ?? 1, isPNG: opened.format == .png, keeping: kept != nil)
            try checkOutputs(options, kept: kept, isPNG: opened.format == .png, classes: plan.classes, logger: logger)
            let size = Size2(image.height, image.width)
            let start = Date()
            for note in job.sizeNotes(image: size, plan: plan) {
                logger.warning("\(note)", metadata: ["image": "\(path)"])
            }
            var t = try job.tile ?? mapper.defaultTile(mode: job.mode, image: size)
            var levels = 1
            if job.mode == .shift { t = TilePlan.roundUp(t, TilePlan.shiftUnit(plan.tasks.stride)) }
            if options.kinds.contains(where: \.isChunked) {
                (t, levels) = MapPyramid.fit(
                    tile: t, image: size, stride: plan.tasks.stride, fixedTile: job.tile != nil)
            }
            let perTile = TilePlan.tasksPerTile(mode: job.mode, stride: plan.tasks.stride)
            if let why = TilePlan.tooManyTiles(image: size, tile: t, tasksPerTile: perTile) {
                throw ClusterError("\(path): \(why)")
            }
            var skip: ((PixelRect) -> Bool)?
            if slide.tissue {
                let mask = try ImageInput.tissueMask(
                    opened, path: path, tolerateDamage: slide.corruptTiles == .skip,
                    announce: { logger.notice("\($0)", metadata: ["image": "\(path)"]) },
                    stop: { interruption.isInterrupted })
                skip = { !mask.containsTissue($0) }
                logger.info(
                    "tissue",
                    metadata: [
                        "image": "\(path)",
                        "fraction": "\(String(format: "%.3f", mask.tissueFraction))",
                        "feature": "\(mask.feature.rawValue)\(mask.feature == .brightness ? " (dark background)" : "")",
                        "unreadable-cells": "\(mask.damagedCells)",
                        // Barely coloured but darker than the glass: tissue by brightness alone.
                        "pale-cells": "\(mask.paleCells)",
                    ])
            }
            logger.info(
                "mapping",
                metadata: [
                    "image": "\(path)", "size": "\(image.width)×\(image.height)",
                    "level": "\(opened.levelDescription)", "mode": "\(job.mode.rawValue)",
                    "tile": "\(t)",
                ])
            // The map pixels computed (the tiles with tissue): what Mpx/s counts, as the cluster's status does.
            let mapped = TilePlan.mapTiles(mode: job.mode, image: size, tile: t, stride: plan.tasks.stride)
                .filter { skip?($0) != true }.reduce(0) { $0 + $1.height * $1.width }
            if slide.tissue && mapped == 0 {
                logger.warning(
                    "no tissue found: nothing is computed (map without --tissue?)", metadata: ["image": "\(path)"])
            }
            let replacing = options.kinds.contains(.zarr) && FileManager.default.fileExists(atPath: options.zarrPath)
            let sink = try ChunkedMapOutput(
                options: options, classes: plan.classes, height: size.h, width: size.w,
                tile: t, dtype: slide.dtype, levels: levels, kept: kept, micronsPerPixel: opened.mpp,
                micronsPerPixelY: opened.mppY,
                source: MapSource(file: path, image: opened.image, level: opened.level, scale: opened.scale))
            let checks = check ?? (plan.geometry.isExact || job.mode == .naive ? 0 : 256)
            var checker =
                checks > 0
                ? MapChecker(
                    count: checks, image: size,
                    keep: skip.map { skip in
                        { y, x in !skip(PixelRect(y: y, x: x, height: 1, width: 1)) }
                    }) : nil
            let counts: TileCounts
            let written: [String]
            // --corrupt-tiles skip: a tile whose input is damaged is left empty, logged and counted.
            var damaged: [PixelRect] = []
            var firstDamage = ""
            var damagedPixels = 0
            let giveUp: ((PixelRect, any Error) -> Bool)? =
                slide.corruptTiles == .skip
                ? { rect, error in
                    guard let error = error as? SlideError, error.isCorruptData else { return false }
                    if damaged.isEmpty { firstDamage = "first at y \(rect.y) x \(rect.x): \(error)" }
                    damaged.append(rect)
                    damagedPixels += rect.height * rect.width
                    logger.warning(
                        "map tile left empty: its input is damaged",
                        metadata: [
                            "image": "\(path)", "tile": "y \(rect.y) x \(rect.x) \(rect.height)×\(rect.width)",
                            "error": "\(error)",
                        ])
                    return true
                } : nil
            do {
                // A failed read (the storage, not the data: `SlideError.readFailed`) is tried
                // again after 2 s and 6 s, as a cluster retries a failed task.
                let retryAfter: (any Error, Int) -> Double? = { error, failures in
                    guard let error = error as? SlideError, error.kind == .readFailed, failures < 3 else { return nil }
                    let wait = failures == 1 ? 2.0 : 6.0
                    logger.warning(
                        "reading the image failed: trying again",
                        metadata: ["image": "\(path)", "in": "\(Int(wait)) s", "error": "\(error)"])
                    return wait
                }
                counts = try mapper.mapTiles(
                    image, mode: job.mode, tile: t, skip: skip, giveUp: giveUp, retryAfter: retryAfter,
                    progress: { done, total in
                        progress.update(
                            label: OutputOptions.stem(forInput: path), done: done, total: total,
                            pixels: mapped - damagedPixels, since: start)
                    },
                    emit: { tile in
                        if interruption.isInterrupted { throw ClusterError("interrupted") }
                        checker?.record(tile)
                        try sink.write(tile.rect, values: tile.values)
                    })
                progress.finish()
                if counts.computed == 0 && counts.givenUp > 0 {
                    // Not a map with holes: nothing at all (damaged tables, a file cut short early).
                    throw ClusterError(
                        "\(path): the input of every map tile is damaged (\(counts.givenUp) tiles), so "
                            + "nothing could be mapped: \(firstDamage)")
                }
                // A slide's tiles are read as they are mapped: one rewritten meanwhile mixes two images (audit 53 F1).
                // (A PNG was decoded whole before its first tile: what changes later is not mapped; review 31 F4.)
                if let identity, opened.format != .png, FileIdentity(path: path) != identity {
                    throw ClusterError(
                        "\(path) changed while it was mapped: its tiles may come from two images, so the map is not "
                            + "written; run again")
                }
                written = try sink.finish(image: image, logger: logger, damaged: damaged)
                if replacing {
                    // Outputs of this image's names that this run did not write belong to the map the new zarr
                    // replaced (docs audit 49 F1), as the embedded coordinator's path removes them.
                    let earlier = OutputOptions.existingOutputs(directory: options.directory, stem: options.stem)
                        .filter { !written.contains($0) }
                    for file in earlier { try? FileManager.default.removeItem(atPath: file) }
                    if !earlier.isEmpty {
                        logger.info(
                            "removed an earlier run's outputs, which the new map replaces: \(earlier.joined(separator: ", "))"
                        )
                    }
                }
                if let checker {
                    let result = try checker.finish(mapper, image: image)
                    let report = "\(options.directory)/\(options.stem).check.json"
                    try result.json().write(to: URL(fileURLWithPath: report), options: .atomic)
                    logger.info(
                        "check against the exact classifier: \(result.summary)",
                        metadata: ["image": "\(path)", "report": "\(report)"])
                }
            } catch let kept as MapKeptError {
                if !kept.removed.isEmpty {
                    logger.info(
                        "removed earlier outputs of this image, which do not match the new map: \(kept.removed.joined(separator: ", "))"
                    )
                }
                throw ClusterError("\(kept.error). \(keptMapNote(kept.map, options: options, image: path))")
            } catch {
                progress.finish()
                sink.abandon()
                if let error = error as? SlideError, error.isCorruptData {
                    logger.error("--corrupt-tiles skip maps the rest of the image and leaves such tiles empty")
                }
                throw error  // `forEachImage` names the image in an engine's or net's error
            }
            if counts.givenUp > 0 {
                let tiles = "\(counts.givenUp) map tile\(counts.givenUp == 1 ? "" : "s")"
                logger.warning(
                    "\(tiles) left empty (fill value): input damaged (\(firstDamage))", metadata: ["image": "\(path)"])
            }
            logger.info(
                "done",
                metadata: [
                    "image": "\(path)",
                    "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
                    "tiles": .string(
                        "\(counts.computed) computed, \(counts.skipped) skipped"
                            + (counts.givenUp > 0 ? ", \(counts.givenUp) left empty (damaged input)" : "")),
                    "read-s": "\(String(format: "%.2f", counts.readSeconds))",
                    "compute-s": "\(String(format: "%.2f", counts.computeSeconds))",
                    "files": "\(written.count)",
                ])
        }
    }
}
