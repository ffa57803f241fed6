import TesseraCore

/// Tessera's own description of a network: what the Caffe importer produces,
/// what net surgery rewrites, and what the engine plans and runs.
///
/// Weights live in the layer that uses them, already normalised by the importer
/// (BatchNorm's moving-average factor divided out, InnerProduct `transpose`
/// undone), so the engine never needs to know how Caffe stored them.
public struct Net: Sendable, Equatable {
    public var name: String
    /// Name of the input blob (Caffe's `data`).
    public var inputName: String
    /// Channels of the input blob (3 for RGB/BGR, 1 for gray).
    public var inputChannels: Int
    /// The patch size P the classifier was trained on (its input height/width), when known.
    public var patchSize: Size2?
    /// Layers in execution order (Caffe's order, which is topological).
    public var layers: [Layer]

    public init(name: String, inputName: String, inputChannels: Int, patchSize: Size2?, layers: [Layer]) {
        self.name = name
        self.inputName = inputName
        self.inputChannels = inputChannels
        self.patchSize = patchSize
        self.layers = layers
    }

    /// Name of the blob the net produces (the last layer's first top).
    public var outputName: String { layers.last?.tops.first ?? inputName }
}

public struct Layer: Sendable, Equatable {
    public var name: String
    public var op: LayerOp
    public var bottoms: [String]
    public var tops: [String]

    public init(name: String, op: LayerOp, bottoms: [String], tops: [String]) {
        self.name = name
        self.op = op
        self.bottoms = bottoms
        self.tops = tops
    }
}

public enum LayerOp: Sendable, Equatable {
    case convolution(Convolution)
    case pooling(Pooling)
    case innerProduct(InnerProduct)
    case relu(negativeSlope: Float)
    case sigmoid
    case tanh
    case lrn(LRN)
    case batchNorm(BatchNorm)
    case scale(Scale)
    /// Identity at inference (Dropout, Split's extra tops are handled as aliases).
    case identity
    /// Softmax over the channel axis.
    case softmax
    /// Concatenation along the channel axis.
    case concat
    case eltwise(Eltwise)

    /// Caffe's type name, for tables and messages.
    public var typeName: String {
        switch self {
        case .convolution: return "Convolution"
        case .pooling: return "Pooling"
        case .innerProduct: return "InnerProduct"
        case .relu: return "ReLU"
        case .sigmoid: return "Sigmoid"
        case .tanh: return "TanH"
        case .lrn: return "LRN"
        case .batchNorm: return "BatchNorm"
        case .scale: return "Scale"
        case .identity: return "Identity"
        case .softmax: return "Softmax"
        case .concat: return "Concat"
        case .eltwise: return "Eltwise"
        }
    }
}

/// Convolution. `weights` are `[outputs, inputs/group, kernel.h, kernel.w]` row-major.
public struct Convolution: Sendable, Equatable {
    public var outputs: Int
    public var kernel: Size2
    public var stride: Size2
    public var pad: Size2
    public var dilation: Size2
    public var group: Int
    public var weights: [Float]
    /// One value per output channel, or nil when `bias_term: false`.
    public var bias: [Float]?

    public init(
        outputs: Int, kernel: Size2, stride: Size2 = .one, pad: Size2 = .zero,
        dilation: Size2 = .one, group: Int = 1, weights: [Float], bias: [Float]?
    ) {
        self.outputs = outputs
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.dilation = dilation
        self.group = group
        self.weights = weights
        self.bias = bias
    }

    /// Input channels implied by the weights.
    public var inputsPerGroup: Int {
        let a = outputs.multipliedReportingOverflow(by: kernel.h)
        let b = a.partialValue.multipliedReportingOverflow(by: kernel.w)
        // More weights per input than there can be: no whole input channel.
        guard !a.overflow, !b.overflow else { return 0 }
        return weights.count / max(1, b.partialValue)
    }
}

public struct Pooling: Sendable, Equatable {
    public enum Method: String, Sendable { case max = "MAX", average = "AVE" }
    public var method: Method
    public var kernel: Size2
    public var stride: Size2
    public var pad: Size2
    /// Global pooling: the kernel is the whole input (resolved by shape inference).
    public var global: Bool
    /// Not a Caffe field: the engine's dense mode dilates pooling windows.
    public var dilation: Size2

    public init(
        method: Method, kernel: Size2, stride: Size2 = .one, pad: Size2 = .zero,
        global: Bool = false, dilation: Size2 = .one
    ) {
        self.method = method
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.global = global
        self.dilation = dilation
    }
}

/// InnerProduct. `weights` are `[outputs, inputs]` row-major (Caffe's layout
/// without `transpose`; the importer undoes `transpose: true`).
public struct InnerProduct: Sendable, Equatable {
    public var outputs: Int
    public var weights: [Float]
    public var bias: [Float]?

    public init(outputs: Int, weights: [Float], bias: [Float]?) {
        self.outputs = outputs
        self.weights = weights
        self.bias = bias
    }
    public var inputs: Int { weights.count / max(1, outputs) }
}

public struct LRN: Sendable, Equatable {
    public enum Region: String, Sendable { case acrossChannels = "ACROSS_CHANNELS", withinChannel = "WITHIN_CHANNEL" }
    public var region: Region
    public var size: Int
    public var alpha: Float
    public var beta: Float
    public var k: Float

    public init(region: Region, size: Int, alpha: Float, beta: Float, k: Float) {
        self.region = region
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
    }
}

/// Inference-time BatchNorm: `y = (x - mean) / sqrt(variance + eps)`, then, for
/// NVIDIA's 5-blob variant, `· scale + bias`. Mean and variance are the saved
/// running sums already divided by the moving-average factor.
public struct BatchNorm: Sendable, Equatable {
    public var mean: [Float]
    public var variance: [Float]
    public var eps: Float
    public var scale: [Float]?
    public var bias: [Float]?

    public init(mean: [Float], variance: [Float], eps: Float, scale: [Float]? = nil, bias: [Float]? = nil) {
        self.mean = mean
        self.variance = variance
        self.eps = eps
        self.scale = scale
        self.bias = bias
    }
}

/// Per-channel `y = x · scale + bias` (Caffe's Scale layer with axis 1).
public struct Scale: Sendable, Equatable {
    public var scale: [Float]
    public var bias: [Float]?

    public init(scale: [Float], bias: [Float]?) {
        self.scale = scale
        self.bias = bias
    }
}

public struct Eltwise: Sendable, Equatable {
    public enum Operation: String, Sendable { case product = "PROD", sum = "SUM", max = "MAX" }
    public var operation: Operation
    /// Per-bottom coefficients for SUM (empty: all 1).
    public var coefficients: [Float]

    public init(operation: Operation, coefficients: [Float] = []) {
        self.operation = operation
        self.coefficients = coefficients
    }
}
