import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// Nets that pad cannot equal the patch classifier, but with `--allow-padding`
/// every FCN mode must still sample one map: the whole-image pass, padded at
/// the image's edges and nowhere else (no seams at tile edges).
@Suite("Nets that pad: one map whatever the mode and the tiling")
struct PaddedNetTests {
    static let preprocessing = ModeAgreementTests.preprocessing

    /// The test net, and the seed's nuclei net where the seed models are present
    /// (a real net that pads: 32 channels, receptive field 67, so it gets smaller cases).
    static func engines() throws -> [(String, MapEngine, Preprocessing)] {
        var out = [
            ("padded test net", try MapEngine(classifier: TestNets.padded, allowPadding: true), preprocessing),
            ("resnet test net", try MapEngine(classifier: TestNets.resnet, allowPadding: true), preprocessing),
            (
                "even-pool test net", try MapEngine(classifier: TestNets.paddedEvenPool, allowPadding: true),
                preprocessing
            ),
        ]
        if Seed.available {
            let m = try ModelLoader.load(ModelSource(weights: Seed.path("nuclei-cifar10quick/nuclei_w32.caffemodel")))
            let (mean, _) = try Preprocessing.readMeanFile(Seed.path("nuclei-cifar10quick/mean_w32.binaryproto"))
            out.append(("nuclei-cifar10quick", try MapEngine(model: m, allowPadding: true), Preprocessing(mean: mean)))
        }
        return out
    }

    static func maxDiff(_ a: ProbabilityMap, _ b: ProbabilityMap) -> Float {
        zip(a.data, b.data).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test("dense equals shift on every pixel and fast at grid points, for several image sizes")
    func modesAgree() throws {
        for (name, engine, prep) in try Self.engines() {
            #expect(!engine.geometry.isExact && engine.tasks.pads, "\(name) should pad")
            let mapper = LocalMapper(engine: engine, preprocessing: prep, threads: 2)
            var sizes = name.hasPrefix("nuclei") ? [(13, 21), (1, 2)] : [(29, 41), (7, 5), (1, 2)]
            // Every size modulo the stride: which windows of the last band start past their input depends on it.
            if name.hasPrefix("even-pool") { sizes += [(16, 44), (17, 45), (18, 42), (19, 43), (40, 40), (2, 3)] }
            for (h, w) in sizes {
                let image = ArrayImage.random(height: h, width: w, seed: UInt64(h * 100 + w))
                let dense = try mapper.map(image, mode: .dense)
                let shift = try mapper.map(image, mode: .shift)
                // (A NaN passes `maxDiff`: `max` keeps the other operand.)
                for (mode, map) in [("dense", dense), ("shift", shift)] {
                    let bad = map.data.filter { !($0 >= 0 && $0 <= 1) }.count
                    #expect(bad == 0, "\(name) \(h)×\(w) \(mode): \(bad) values NaN or outside [0, 1]")
                }
                let d = Self.maxDiff(dense, shift)
                #expect(d <= 1e-5, "\(name) \(h)×\(w): dense vs shift differ by \(d)")
                let fast = try mapper.map(image, mode: .fast)
                let s = engine.tasks.stride
                var worst: Float = 0
                for c in 0..<fast.classes {
                    for y in stride(from: 0, to: h, by: s.h) {
                        for x in stride(from: 0, to: w, by: s.w) {
                            worst = max(worst, abs(fast[c, y, x] - dense[c, y, x]))
                        }
                    }
                }
                #expect(worst <= 1e-5, "\(name) \(h)×\(w): fast vs dense at grid points: \(worst)")
                // Not trivially equal: the map varies over the image.
                if h * w > 100 { #expect(Set(dense.data).count > 50, "\(name): a constant map proves nothing") }
            }
        }
    }

    @Test("Tiled maps are bit-identical to untiled ones (no seams at tile edges)")
    func tilingIsExact() throws {
        for (name, engine, prep) in try Self.engines() {
            let mapper = LocalMapper(engine: engine, preprocessing: prep, threads: 2)
            let heavy = name.hasPrefix("nuclei")
            let image =
                heavy
                ? ArrayImage.random(height: 21, width: 18, seed: 8) : ArrayImage.random(height: 45, width: 38, seed: 8)
            // naive (in batches) as well: the classifier itself, which no tiling may change.
            for mode in [MapMode.dense, .shift, .fast, .naive] {
                let whole = try mapper.map(image, mode: mode, tile: 64)
                for tile in heavy ? [8, 13] : [8, 13, 24] {
                    let tiled = try mapper.map(image, mode: mode, tile: tile)
                    #expect(
                        tiled.data == whole.data,
                        "\(name) \(mode) tile \(tile): max difference \(Self.maxDiff(tiled, whole))")
                }
            }
        }
    }

    /// The definition, through another path: the strided net run once over the whole mirror-padded image,
    /// untiled and unmasked, its poolings rounding up with Caffe's partial last windows, is the map at its
    /// grid points. (Against the dense net's own unmasked pass, which leaves those windows out, the map
    /// differed until release 0.3.2 made it Caffe's; the fixture `padded_partial_pool` checks it against OpenCV.)
    @Test(
        "The map is the net's own pass over the whole padded image at its grid points: it pads at the image's edges only"
    )
    func wholeImagePass() throws {
        for (name, engine, prep) in try Self.engines() {
            let image =
                name.hasPrefix("nuclei")
                ? ArrayImage.random(height: 17, width: 14, seed: 11)
                : ArrayImage.random(height: 30, width: 27, seed: 11)
            let size = Size2(image.height, image.width)
            let whole = engine.tasks.wholeImageInput(size)
            let mapping = try ChannelMapping.resolve(
                imageChannels: 3, netChannels: engine.fcn.inputChannels,
                order: prep.channelOrder)
            let input = PixelRegion(image: image, paddedRect: whole, halfPatch: engine.tasks.halfPatch)
                .tensor(mapping: mapping, preprocessing: prep)
            let pass = try NetRunner(net: engine.fcn).forward(input, threads: 2)
            let s = engine.tasks.stride
            #expect(pass.h >= (size.h + s.h - 1) / s.h && pass.w >= (size.w + s.w - 1) / s.w)
            let mapper = LocalMapper(engine: engine, preprocessing: prep, threads: 2)
            for mode in [MapMode.dense, .shift, .fast] {
                let map = try mapper.map(image, mode: mode, tile: 8)
                var worst: Float = 0
                for c in 0..<map.classes {
                    for y in stride(from: 0, to: size.h, by: s.h) {
                        for x in stride(from: 0, to: size.w, by: s.w) {
                            worst = max(worst, abs(map[c, y, x] - pass.plane(c)[(y / s.h) * pass.w + x / s.w]))
                        }
                    }
                }
                #expect(worst <= 1e-5, "\(name) \(mode): differs from the whole-image pass by \(worst)")
            }
        }
    }

    /// The map placed each pixel's window centred on its patch, not where the classifier places it: for
    /// even P (and P ≡ 2, 3 mod 4 here) the map was the classifier's shifted by 1–2 pixels (ONNX user
    /// audit). A net whose padding never counts must give the classifier's map exactly. The 16×21 patch
    /// also has extents that differ per axis: the whole-image pass was planned square (review).
    @Test(
        "A net that pads where padding never counts: dense, shift and fast equal naive (P 21 … 25, 16×21)",
        arguments: [
            Size2(square: 21), Size2(square: 22), Size2(square: 23), Size2(square: 24), Size2(square: 25),
            Size2(16, 21),
        ])
    func paddingThatNeverCountsIsExact(patch: Size2) throws {
        let engine = try MapEngine(classifier: TestNets.centreTaps(patch: patch), allowPadding: true)
        #expect(!engine.geometry.isExact && engine.tasks.pads)
        let mapper = LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 23, width: 19, seed: UInt64(patch.h * 100 + patch.w))
        // The whole-image pass reads the mirror-padded image and yields at least the image's pixels.
        let whole = engine.tasks.wholeImageInput(Size2(23, 19))
        #expect(whole.height == 23 + patch.h - 1 && whole.width == 19 + patch.w - 1)
        let shapes = try engine.plan.dense.shapes(input: Size2(whole.height, whole.width)).1
        #expect(shapes.last!.h >= 23 && shapes.last!.w >= 19, "P \(patch): \(String(describing: shapes.last))")
        let naive = try mapper.map(image, mode: .naive)
        #expect(Set(naive.data).count > 50, "a constant map proves nothing")
        for mode in [MapMode.dense, .shift] {
            let map = try mapper.map(image, mode: mode, tile: 8)
            let d = Self.maxDiff(map, naive)
            #expect(d <= 1e-5, "P \(patch) \(mode): differs from naive by \(d)")
        }
        let fast = try mapper.map(image, mode: .fast)
        let s = engine.tasks.stride
        for y in stride(from: 0, to: image.height, by: s.h) {
            for x in stride(from: 0, to: image.width, by: s.w) {
                #expect(abs(fast[0, y, x] - naive[0, y, x]) <= 1e-5, "P \(patch) fast at (\(y), \(x))")
            }
        }
    }

    /// Fuzz audit: the whole-image pass read `H + m − 1` rows (m: the dense net's smallest input, 7 here)
    /// instead of the mirror-padded image's `H + P − 1`, so a net whose strided convolution leaves the
    /// patch's last row unread padded its last map row and column where the classifier sees mirrored
    /// pixels (off by up to 0.1 there).
    @Test("A net whose padding never counts and whose strided layer skips the patch's last row equals naive")
    func strideSkipsLastRow() throws {
        let patch = 8
        var fc = TestNets.ip("fc", "conv2", "fc", inputs: 4 * 3 * 3, outputs: 3, seed: 82)
        if case .innerProduct(var ip) = fc.op {
            // Zero for conv2's row and column 0, the only ones conv1's padding reaches.
            for o in 0..<3 {
                for c in 0..<4 {
                    for y in 0..<3 {
                        for x in 0..<3 where y == 0 || x == 0 { ip.weights[o * 36 + c * 9 + y * 3 + x] = 0 }
                    }
                }
            }
            fc.op = .innerProduct(ip)
        }
        var conv1 = TestNets.conv("conv1", "data", "conv1", cin: 3, cout: 4, k: 3, seed: 80)
        if case .convolution(var c) = conv1.op {
            c.pad = .one
            conv1.op = .convolution(c)
        }
        let net = Net(
            name: "stride-skips-last-row", inputName: "data", inputChannels: 3, patchSize: Size2(square: patch),
            layers: [
                conv1,
                TestNets.op("relu1", .relu(negativeSlope: 0), ["conv1"], "conv1"),
                TestNets.conv("conv2", "conv1", "conv2", cin: 4, cout: 4, k: 3, stride: 2, seed: 81),
                fc,
                TestNets.op("prob", .softmax, ["fc"], "prob"),
            ])
        let engine = try MapEngine(classifier: net, allowPadding: true)
        #expect(engine.tasks.pads && engine.tasks.minimalInput.h < patch)
        let mapper = LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 17, width: 19, seed: 83)
        let naive = try mapper.map(image, mode: .naive)
        #expect(Set(naive.data).count > 50, "a constant map proves nothing")
        for mode in [MapMode.dense, .shift] {
            for tile in [5, 64] {
                let d = Self.maxDiff(try mapper.map(image, mode: mode, tile: tile), naive)
                #expect(d <= 1e-5, "\(mode) tile \(tile): differs from naive by \(d)")
            }
        }
        // A job of this net begun by release 0.3.0 (placement 2) must not be resumed with these numbers;
        // one of a net whose pass did not change (the padded test net: m ≥ P) may be.
        let exact = engine.geometry.isExact
        #expect(engine.tasks.placementChange(since: 2, exact: exact)?.contains("mirror-padded image") == true)
        #expect(engine.tasks.placementChange(since: TaskGeometry.placementVersion, exact: exact) == nil)
        let other = try MapEngine(classifier: TestNets.padded, allowPadding: true)
        #expect(other.tasks.minimalInput.h >= other.tasks.patch.h)
        #expect(other.tasks.placementChange(since: 2, exact: other.geometry.isExact) == nil)
    }

    /// A job of this net stored by 0.3.2–0.3.3 (placement 4) is not resumed where its pass took windows starting past
    /// their input for real values (its tiles may hold NaN); it is where the image's size left none in the pass.
    @Test("Placement 5: a stored job whose pass had windows starting past their input is not resumed")
    func emptyWindowsPlacement() throws {
        let engine = try MapEngine(classifier: TestNets.paddedEvenPool, allowPadding: true)
        let plan = engine.plan
        func change(_ recorded: Int, _ h: Int, _ w: Int) -> String? {
            plan.placementChange(since: recorded, exact: false, mode: .dense, image: Size2(h, w))
        }
        var affected = 0
        for (h, w) in [(16, 44), (17, 45), (18, 42), (19, 43), (40, 40)] {
            #expect(change(TaskGeometry.placementVersion, h, w) == nil)
            let input = engine.tasks.wholeImageInput(Size2(h, w))
            let same =
                plan.stridedLayout.validRegions(plan.fcn, input: input)
                == plan.stridedLayout.validRegions(plan.fcn, input: input, partialWindows: .wholeStride)
            #expect((change(4, h, w) == nil) == same, "\(h)×\(w)")
            if !same {
                affected += 1
                #expect(change(4, h, w)?.contains("start past their input's end") == true)
            }
        }
        #expect(affected > 0, "no size of the test set is affected: the check proves nothing")
    }

    @Test("A task of a net that pads must say the image size")
    func taskNeedsImageSize() throws {
        let engine = try MapEngine(classifier: TestNets.padded, allowPadding: true)
        let task = TileTask(mode: .dense, rect: PixelRect(y: 0, x: 0, height: 4, width: 4))
        let r = engine.tasks.inputRect(task)
        let input = Tensor(Shape(c: 3, h: r.height, w: r.width))
        #expect(throws: EngineError.self) { try engine.run(task, input: input, threads: 1) }
    }
}
