import TesseraCore

/// Nets written before Caffe's 2015 format change list their layers under `layers`
/// (V1LayerParameter, types as an enum): read with the types mapped to current names.
extension CaffeImporter {
    /// The net with its V1 layers rewritten as current ones; a current net as it is.
    static func upgradeV1(_ net: Caffe_NetParameter, file: String) throws -> Caffe_NetParameter {
        guard net.layer.isEmpty, !net.layers.isEmpty else { return net }
        var out = net
        out.layers = []
        for old in net.layers {
            var l = Caffe_LayerParameter()
            l.name = old.name
            l.bottom = old.bottom
            l.top = old.top
            l.include = old.include
            l.exclude = old.exclude
            l.blobs = old.blobs
            guard let type = v1Types[old.type] else {
                throw ModelError(
                    file: file, layer: old.name,
                    "this legacy (V1 'layers') file uses the layer type \(old.type), which Tessera does not support; "
                        + "upgrade it with Caffe's upgrade_net_proto_text/upgrade_net_proto_binary")
            }
            l.type = type
            if old.hasConvolutionParam { l.convolutionParam = old.convolutionParam }
            if old.hasPoolingParam { l.poolingParam = old.poolingParam }
            if old.hasInnerProductParam { l.innerProductParam = old.innerProductParam }
            if old.hasLrnParam { l.lrnParam = old.lrnParam }
            if old.hasReluParam { l.reluParam = old.reluParam }
            if old.hasPowerParam { l.powerParam = old.powerParam }
            if old.hasDropoutParam { l.dropoutParam = old.dropoutParam }
            if old.hasConcatParam { l.concatParam = old.concatParam }
            if old.hasEltwiseParam { l.eltwiseParam = old.eltwiseParam }
            if old.hasSoftmaxParam { l.softmaxParam = old.softmaxParam }
            if old.hasDataParam { l.dataParam = old.dataParam }
            if old.hasTransformParam { l.transformParam = old.transformParam }
            if old.hasImageDataParam { l.imageDataParam = old.imageDataParam }
            if old.hasMemoryDataParam { l.memoryDataParam = old.memoryDataParam }
            out.layer.append(l)
        }
        return out
    }

    static let v1Types: [Caffe_V1LayerParameter.LayerType: String] = [
        .accuracy: "Accuracy", .concat: "Concat", .convolution: "Convolution", .data: "Data",
        .dropout: "Dropout", .eltwise: "Eltwise", .imageData: "ImageData", .innerProduct: "InnerProduct",
        .lrn: "LRN", .memoryData: "MemoryData", .pooling: "Pooling", .relu: "ReLU", .sigmoid: "Sigmoid",
        .softmax: "Softmax", .softmaxLoss: "SoftmaxWithLoss", .split: "Split", .tanh: "TanH",
        .silence: "Silence", .euclideanLoss: "EuclideanLoss", .hdf5Data: "HDF5Data", .dummyData: "DummyData",
        .bnll: "BNLL", .absval: "AbsVal", .power: "Power", .flatten: "Flatten",
    ]
}
