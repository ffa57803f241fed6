import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

@Suite("naive, fast, shift and dense agree")
struct ModeAgreementTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var net: String, h: Int, w: Int
        var testDescription: String { "\(net) on \(h)×\(w)" }
    }

    static func net(_ name: String) -> Net {
        switch name {
        case "seed-like": return TestNets.seedLike
        case "strided": return TestNets.stridedConvs
        default: return TestNets.oddBranchy
        }
    }

    static let cases: [Case] = [
        Case(net: "seed-like", h: 23, w: 37), Case(net: "seed-like", h: 5, w: 9),
        Case(net: "strided", h: 19, w: 26), Case(net: "strided", h: 3, w: 2),
        Case(net: "odd-branchy", h: 17, w: 12), Case(net: "odd-branchy", h: 1, w: 1),
    ]

    static let preprocessing = Preprocessing(mean: [104, 117, 123], rawScale: 1, scale: 1 / 64.0, channelOrder: .bgr)

    static func maxDiff(_ a: ProbabilityMap, _ b: ProbabilityMap) -> Float {
        zip(a.data, b.data).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test("shift and dense equal naive on every pixel", arguments: cases)
    func exactModesAgree(_ tc: Case) throws {
        let engine = try MapEngine(classifier: Self.net(tc.net))
        #expect(engine.geometry.isExact, "\(engine.geometry.inexactReasons)")
        let mapper = LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 2)
        let image = ArrayImage.random(height: tc.h, width: tc.w, seed: 7)
        let naive = try mapper.map(image, mode: .naive)
        let shift = try mapper.map(image, mode: .shift)
        let dense = try mapper.map(image, mode: .dense)
        #expect(naive.classes == engine.classes && naive.height == tc.h && naive.width == tc.w)
        #expect(Self.maxDiff(naive, shift) <= 1e-5, "shift vs naive: \(Self.maxDiff(naive, shift))")
        #expect(Self.maxDiff(naive, dense) <= 1e-5, "dense vs naive: \(Self.maxDiff(naive, dense))")
        // Probabilities, not garbage: every pixel sums to 1.
        for y in 0..<tc.h {
            for x in 0..<tc.w {
                let s = (0..<naive.classes).reduce(Float(0)) { $0 + dense[$1, y, x] }
                #expect(abs(s - 1) < 1e-5)
            }
        }
        // fast equals them at grid points (iS, jS).
        let fast = try mapper.map(image, mode: .fast)
        let s = engine.tasks.stride
        var worst: Float = 0
        for c in 0..<fast.classes {
            for y in stride(from: 0, to: tc.h, by: s.h) {
                for x in stride(from: 0, to: tc.w, by: s.w) { worst = max(worst, abs(fast[c, y, x] - naive[c, y, x])) }
            }
        }
        #expect(worst <= 1e-5, "fast vs naive at grid points: \(worst)")
    }

    @Test(
        "Tiled maps are bit-identical to untiled ones", arguments: ["seed-like", "strided"],
        [MapMode.dense, .shift, .fast, .naive])
    func tilingIsExact(_ net: String, _ mode: MapMode) throws {
        let engine = try MapEngine(classifier: Self.net(net))
        let mapper = LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 45, width: 38, seed: 8)
        let whole = try mapper.map(image, mode: mode, tile: 64)
        for tile in [4, 8, 13, 24] {
            let tiled = try mapper.map(image, mode: mode, tile: tile)
            let identical = tiled.data == whole.data
            #expect(identical, "tile \(tile): max difference \(Self.maxDiff(tiled, whole))")
        }
    }

    /// The seed's trained fcn-batchnorm (strided 2×2/2, 3×3/2 and 4×4/2 convolutions, which
    /// `fast` and `shift` run through the strided direct kernel): its modes agree with `naive`
    /// and its tiled maps equal untiled ones bit for bit.
    @Test(
        "fcn-batchnorm (strided): modes agree with naive, tiled == untiled",
        .enabled(if: Seed.available, "needs ../shared/models/seed (the seed models beside the repository)"))
    func fcnBatchNorm() throws {
        let m = try ModelLoader.load(
            ModelSource(
                model: Seed.path("fcn-batchnorm/deploy_full.prototxt"),
                weights: Seed.path("fcn-batchnorm/full_convolutional_net.caffemodel")))
        let engine = try MapEngine(classifier: m.classifier)
        #expect(engine.geometry.isExact)
        let mapper = LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 21, width: 26, seed: 10)
        let naive = try mapper.map(image, mode: .naive)
        for mode in [MapMode.fast, .shift, .dense] {
            let whole = try mapper.map(image, mode: mode, tile: 64)
            if mode != .fast {
                #expect(Self.maxDiff(naive, whole) <= 1e-5, "\(mode) vs naive: \(Self.maxDiff(naive, whole))")
            }
            for tile in [8, 13] {
                let tiled = try mapper.map(image, mode: mode, tile: tile)
                #expect(
                    tiled.data == whole.data, "\(mode) tile \(tile): max difference \(Self.maxDiff(tiled, whole))")
            }
        }
    }

    @Test("Thread count does not change a single bit")
    func threadsAreExact() throws {
        let engine = try MapEngine(classifier: TestNets.stridedConvs)
        let image = ArrayImage.random(height: 40, width: 33, seed: 9)
        let one = try LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 1).map(
            image, mode: .dense)
        let two = try LocalMapper(engine: engine, preprocessing: Self.preprocessing, threads: 2).map(
            image, mode: .dense)
        let identical = one.data == two.data
        #expect(identical, "max difference \(Self.maxDiff(one, two))")
    }
}
