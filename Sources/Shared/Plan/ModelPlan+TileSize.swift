import TesseraCore
import TesseraModel

extension ModelPlan {
    /// The largest square tile (in map pixels, a multiple of both strides) whose
    /// activations fit the memory budget, capped at the image size. Throws when not
    /// even the smallest one fits (a net whose single patch needs more than the budget).
    package func defaultTile(mode: MapMode, image: Size2, memoryBudget: Int) throws -> Int {
        let s = TilePlan.shiftUnit(tasks.stride)
        let largest = TilePlan.roundUp(max(image.h, image.w), s)
        // The smallest task: one stride step (`naive`: one patch, which its batches hold several of).
        let smallest = try activationBytes(mode: mode == .naive ? .fast : mode, tile: s)
        guard smallest <= memoryBudget else {
            throw ModelError(
                .shape,
                "the smallest \(mode.rawValue) tile (\(s)×\(s) map pixels) of this net needs "
                    + "\(SystemMemory.text(smallest)) of activations, more than the memory budget of "
                    + "\(SystemMemory.text(memoryBudget)): raise --memory-budget (MiB) if this machine, and every "
                    + "worker, has the memory")
        }
        if mode == .naive { return min(largest, 64) }
        var lo = s, hi = largest
        while lo < hi {
            let mid = TilePlan.roundUp((lo + hi + 1) / 2, s)
            if mid > hi { break }
            // A tile too large to size at all (past 2^48 values: a 2^31-pixel side) does not fit either (audit 53 F3: a
            // 2147483647×1 image failed with the shape error of a square tile of that side).
            if let bytes = try? activationBytes(mode: mode, tile: mid), bytes <= memoryBudget {
                lo = mid
            } else {
                hi = mid - s
            }
        }
        return max(s, lo)
    }

    /// Peak bytes of two consecutive activations (a layer's input and output) for one tile.
    func activationBytes(mode: MapMode, tile: Int) throws -> Int {
        let task = TileTask(
            mode: mode == .fast ? .fast : mode,
            rect: PixelRect(
                y: 0, x: 0, height: mode == .fast ? max(1, tile / tasks.stride.h) : tile,
                width: mode == .fast ? max(1, tile / tasks.stride.w) : tile))
        let input = tasks.inputRect(task)
        let net = mode == .dense ? try fcn.densified().net : fcn
        let (_, shapes) = try net.shapes(input: Size2(input.height, input.width))
        var peak = input.height * input.width * fcn.inputChannels
        var previous = peak
        for s in shapes {
            peak = max(peak, previous + s.count)
            previous = s.count
        }
        return peak * MemoryLayout<Float>.size
    }
}

extension ModelPlan {
    /// A note when an `image` is smaller than the patch on either axis: every patch is then mostly mirrored
    /// pixels (user review: a 20×20 image mapped with a 32×32 classifier without a word).
    package func smallImageNote(image: Size2) -> String? {
        let p = geometry.patchSize
        guard image.h < p.h || image.w < p.w else { return nil }
        return "the \(image.w)×\(image.h) image is smaller than the classifier's \(p.w)×\(p.h) patch: every patch "
            + "is mostly the image mirrored at its edges, which the classifier never saw in training"
    }
}
