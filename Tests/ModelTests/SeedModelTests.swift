import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Acceptance tests on the real Caffe models of the original work (docs/ARCHITECTURE.md §2).
/// They read ../shared/models/seed and are skipped when it is absent (a fresh clone).
@Suite("Seed models", .enabled(if: Seed.available, "../shared/models/seed is absent: seed-model tests skipped"))
struct SeedModelTests {
    static let deploy = Seed.path("efficient-pixelwise/deploy.prototxt")
    static let deployFull = Seed.path("efficient-pixelwise/deploy_full.prototxt")
    static let nuclei = Seed.path("nuclei-cifar10quick/nuclei_w32.caffemodel")
    static let nucleiMean = Seed.path("nuclei-cifar10quick/mean_w32.binaryproto")
    static let fcnDeploy = Seed.path("fcn-batchnorm/deploy_full.prototxt")
    static let fcnWeights = Seed.path("fcn-batchnorm/full_convolutional_net.caffemodel")

    @Test("efficient-pixelwise deploy converts to its hand-made deploy_full")
    func efficientPixelwiseSurgery() throws {
        let m = try ModelLoader.load(ModelSource(model: Self.deploy, requireWeights: false))
        #expect(m.patchSize == Size2(square: 32))
        #expect(m.geometry.receptiveField == Size2(square: 32))
        #expect(m.geometry.stride == Size2(square: 4))
        #expect(m.geometry.classes == 2)
        #expect(m.geometry.isExact)
        func conv(_ name: String) -> Convolution? {
            for l in m.net.layers where l.name == name { if case .convolution(let c) = l.op { return c } }
            return nil
        }
        #expect(conv("fc6-conv")?.kernel == Size2(square: 6))
        #expect(conv("fc7-conv")?.kernel == Size2(square: 1))
        #expect(conv("fc8-conv")?.kernel == Size2(square: 1))
        let (_, shapes) = try m.net.shapes(input: Size2(square: 2032))
        #expect(shapes.last == Shape(c: 2, h: 501, w: 501), "2032×2032 gives \(String(describing: shapes.last))")

        // Equivalent to the hand-converted net: same layers, types, kernels, strides, blobs.
        let full = try ModelLoader.load(ModelSource(model: Self.deployFull, requireWeights: false))
        #expect(full.net.layers.count == m.net.layers.count)
        for (a, b) in zip(m.net.layers, full.net.layers) {
            #expect(
                a.name == b.name && a.op.typeName == b.op.typeName && a.bottoms == b.bottoms && a.tops == b.tops,
                "converted \(a.name) \(a.op.typeName) \(a.bottoms)→\(a.tops), hand-made \(b.name) \(b.op.typeName)")
            if case .convolution(let x) = a.op, case .convolution(let y) = b.op {
                #expect(
                    x.kernel == y.kernel && x.stride == y.stride && x.outputs == y.outputs
                        && x.inputsPerGroup == y.inputsPerGroup, "layer \(a.name)")
            }
        }
        let (_, fullShapes) = try full.net.shapes(input: Size2(square: 2032))
        #expect(fullShapes.last == Shape(c: 2, h: 501, w: 501))
    }

    @Test("efficient-pixelwise with fixed random weights: fc weights move unchanged into the convolutions")
    func efficientPixelwiseWeights() throws {
        let shapeOnly = try ModelLoader.load(ModelSource(model: Self.deploy, requireWeights: false))
        let weighted = shapeOnly.classifier.randomised(seed: 7)
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, model) = try CaffeWriter.write(weighted, input: Size2(square: 32))
        let weights = try writeFile(dir, "w.caffemodel", model)
        let m = try ModelLoader.load(ModelSource(model: Self.deploy, weights: weights))
        #expect(m.classifier == weighted)
        for (ip, conv) in zip(weighted.layers, m.net.layers) {
            if case .innerProduct(let a) = ip.op {
                guard case .convolution(let b) = conv.op else { Issue.record("\(ip.name) not converted"); continue }
                #expect(a.weights == b.weights && a.bias == b.bias, "\(ip.name)")
            }
        }
    }

    @Test("nuclei caffemodel loads without a deploy file; its padding is why it is not exact")
    func nucleiWithoutDeploy() throws {
        let m = try ModelLoader.load(ModelSource(weights: Self.nuclei))
        #expect(m.patchSize == Size2(square: 32), "patch from crop_size")
        #expect(m.net.inputChannels == 3)
        #expect(m.geometry.classes == 2)
        #expect(!m.geometry.isExact)
        for layer in ["conv1", "conv2", "conv3"] {
            #expect(
                m.geometry.inexactReasons.contains { $0.contains("'\(layer)'") && $0.contains("pads by 2") },
                "reasons: \(m.geometry.inexactReasons)")
        }
        #expect(!m.net.layers.contains { $0.name == "cifar_train" })
        #expect(m.net.layers.last.map { $0.op == .softmax } == true, "SoftmaxWithLoss becomes Softmax")
        #expect(m.net.layers.last?.bottoms == ["ip2-conv"])
        #expect(throws: ModelError.self) { try m.requireExact(allowApproximate: false) }
        try m.requireExact(allowApproximate: true)

        let (mean, source) = try Preprocessing.readMeanFile(Self.nucleiMean)
        #expect(mean.count == 3)
        #expect(mean.allSatisfy { $0 > 0 && $0 < 255 })
        #expect(source.contains("32×32"))
    }

    @Test("fcn-batchnorm: stride 8, receptive field 64, NVIDIA 0.14 BatchNorm blobs")
    func fcnBatchNorm() throws {
        let m = try ModelLoader.load(ModelSource(model: Self.fcnDeploy, weights: Self.fcnWeights))
        #expect(m.geometry.stride == Size2(square: 8))
        #expect(m.geometry.receptiveField == Size2(square: 64))
        #expect(m.patchSize == Size2(square: 64))
        #expect(m.geometry.isExact)
        #expect(m.geometry.classes == 2)
        #expect(m.net == m.classifier, "already fully convolutional: unchanged")
        let (_, shapes) = try m.net.shapes(input: Size2(square: 2064))
        #expect(shapes.last == Shape(c: 2, h: 251, w: 251))

        guard let bn1a = m.net.layers.first(where: { $0.name == "bn1a" }), case .batchNorm(let bn) = bn1a.op else {
            Issue.record("no BatchNorm bn1a"); return
        }
        // Independent computation: a one-off Python script that parsed the caffemodel's raw
        // protobuf bytes (no swift-protobuf, no Tessera) and computed, per NVIDIA Caffe 0.14's
        // CuDNNBatchNormLayer (blobs: scale, bias, unused factor = 0.0, mean, variance; eps 1e-4),
        //   y[c] = blob0[c] · (x[c] − blob3[c]) / sqrt(blob4[c] + 1e-4) + blob1[c],  x[c] = 0.5·c − 3.
        // With BVLC's reading (factor 0 → statistics scaled by 0) these numbers could not come out.
        let expected: [Float] = [
            0.440459174, 0.348667328, 0.00869856614, 0.0333609297, -0.15430625, 0.172842422,
            -0.312251248, 0.0869381283, 0.233798958, 0.227412578, 0.480797813, 0.0797950095,
            -0.0300142007, -0.314077958, 0.114671405, -0.220792325,
        ]
        #expect(bn.eps == 1e-4)
        #expect(bn.variance.allSatisfy { $0 > 300 && $0 < 2500 })
        for c in 0..<16 {
            let x = 0.5 * Float(c) - 3
            let y = (bn.scale?[c] ?? 1) * (x - bn.mean[c]) / (bn.variance[c] + bn.eps).squareRoot() + (bn.bias?[c] ?? 0)
            #expect(abs(y - expected[c]) < 1e-5, "channel \(c): \(y) vs \(expected[c])")
        }
    }

    @Test(
        "convert round trip: the written prototxt + caffemodel re-read give the same net",
        arguments: ["nuclei", "fcn"])
    func convertRoundTrip(which: String) throws {
        let source =
            which == "nuclei"
            ? ModelSource(weights: Self.nuclei)
            : ModelSource(model: Self.fcnDeploy, weights: Self.fcnWeights)
        let m = try ModelLoader.load(source)
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (text, data) = try CaffeWriter.write(m.net, input: Size2(square: 2032))
        let model = try writeFile(dir, "fcn.prototxt", text)
        let weights = try writeFile(dir, "fcn.caffemodel", data)
        let back = try ModelLoader.load(ModelSource(model: model, weights: weights, patchSize: m.patchSize.h))
        #expect(back.net.layers == m.net.layers)
        #expect(back.net.inputChannels == m.net.inputChannels)
        #expect(back.geometry == m.geometry)
        // The caffemodel alone (it holds the layer definitions too) gives the same.
        let alone = try ModelLoader.load(ModelSource(weights: weights, patchSize: m.patchSize.h))
        #expect(alone.net.layers == m.net.layers)
    }
}
