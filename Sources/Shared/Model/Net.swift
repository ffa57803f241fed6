import TesseraCore

/// Tessera's own description of a network: what the Caffe importer produces,
/// what net surgery rewrites, and what the engine plans and runs.
///
/// Weights live in the layer that uses them, already normalised by the importer
/// (BatchNorm's moving-average factor divided out, InnerProduct `transpose`
/// undone), so the engine never needs to know how Caffe stored them.
package struct Net: Sendable, Equatable {
    package var name: String
    /// Name of the input blob (Caffe's `data`).
    package var inputName: String
    /// Channels of the input blob (3 for RGB/BGR, 1 for gray).
    package var inputChannels: Int
    /// The patch size P the classifier was trained on (its input height/width), when known.
    package var patchSize: Size2?
    /// Layers in execution order (Caffe's order, which is topological).
    package var layers: [Layer]

    package init(name: String, inputName: String, inputChannels: Int, patchSize: Size2?, layers: [Layer]) {
        self.name = name
        self.inputName = inputName
        self.inputChannels = inputChannels
        self.patchSize = patchSize
        self.layers = layers
    }

    /// Name of the blob the net produces (the last layer's first top).
    package var outputName: String { layers.last?.tops.first ?? inputName }

    /// Whether a pooling layer rounds its output size down (Caffe `round_mode: FLOOR`,
    /// ONNX `ceil_mode=0`) rather than up, Caffe's default.
    package var hasPoolingRoundingDown: Bool {
        layers.contains { if case .pooling(let p) = $0.op { !p.roundsUp } else { false } }
    }

    /// Whether the rounding of those layers changes the net at patch size `patch`: rounded up
    /// instead, some layer would have another output size (a partial last window). Where it does
    /// not, a reader that rounds every pooling up computes the same net.
    package func poolingRoundingMatters(at patch: Size2) -> Bool {
        guard hasPoolingRoundingDown else { return false }
        var up = self
        for i in up.layers.indices {
            if case .pooling(var p) = up.layers[i].op, !p.roundsUp {
                p.roundsUp = true
                up.layers[i].op = .pooling(p)
            }
        }
        guard let ours = try? shapes(input: patch).layers, let theirs = try? up.shapes(input: patch).layers else {
            return true
        }
        return ours != theirs
    }
}

package struct Layer: Sendable, Equatable {
    package var name: String
    package var op: LayerOp
    package var bottoms: [String]
    package var tops: [String]

    package init(name: String, op: LayerOp, bottoms: [String], tops: [String]) {
        self.name = name
        self.op = op
        self.bottoms = bottoms
        self.tops = tops
    }
}

package enum LayerOp: Sendable, Equatable {
    case convolution(Convolution)
    case pooling(Pooling)
    case innerProduct(InnerProduct)
    case relu(negativeSlope: Float)
    case sigmoid
    case tanh
    /// `x` for x > 0, `alpha·(eˣ − 1)` otherwise (Caffe ELU, ONNX Elu).
    case elu(alpha: Float)
    /// `log(1 + eˣ)` (Caffe BNLL, ONNX Softplus).
    case softplus
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

    /// Whether every output is a probability, in [0, 1] (softmax, sigmoid).
    package var isProbability: Bool { self == .softmax || self == .sigmoid }

    /// Caffe's type name, for tables and messages.
    package var typeName: String {
        switch self {
        case .convolution: return "Convolution"
        case .pooling: return "Pooling"
        case .innerProduct: return "InnerProduct"
        case .relu: return "ReLU"
        case .sigmoid: return "Sigmoid"
        case .tanh: return "TanH"
        case .elu: return "ELU"
        case .softplus: return "BNLL"
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
package struct Convolution: Sendable, Equatable {
    package var outputs: Int
    package var kernel: Size2
    package var stride: Size2
    package var pad: Size2
    package var dilation: Size2
    package var group: Int
    package var weights: [Float]
    /// One value per output channel, or nil when `bias_term: false`.
    package var bias: [Float]?

    package init(
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
    package var inputsPerGroup: Int {
        let a = outputs.multipliedReportingOverflow(by: kernel.h)
        let b = a.partialValue.multipliedReportingOverflow(by: kernel.w)
        // More weights per input than there can be: no whole input channel.
        guard !a.overflow, !b.overflow else { return 0 }
        return weights.count / max(1, b.partialValue)
    }
}

package struct Pooling: Sendable, Equatable {
    package enum Method: String, Sendable { case max = "MAX", average = "AVE" }
    package var method: Method
    package var kernel: Size2
    package var stride: Size2
    package var pad: Size2
    /// Global pooling: the kernel is the whole input (resolved by shape inference).
    package var global: Bool
    /// Not a Caffe field: the engine's dense mode dilates pooling windows.
    package var dilation: Size2
    /// How the output size is rounded when the last window does not fit whole: up
    /// (Caffe's default `round_mode: CEIL`, ONNX `ceil_mode=1`), adding a partial
    /// last window, or down (Caffe's `round_mode: FLOOR`, ONNX `ceil_mode=0`,
    /// PyTorch's default), leaving the input's last pixels out of every window.
    package var roundsUp: Bool

    package init(
        method: Method, kernel: Size2, stride: Size2 = .one, pad: Size2 = .zero,
        global: Bool = false, dilation: Size2 = .one, roundsUp: Bool = true
    ) {
        self.method = method
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.global = global
        self.dilation = dilation
        self.roundsUp = roundsUp
    }
}

/// InnerProduct. `weights` are `[outputs, inputs]` row-major (Caffe's layout
/// without `transpose`; the importer undoes `transpose: true`).
package struct InnerProduct: Sendable, Equatable {
    package var outputs: Int
    package var weights: [Float]
    package var bias: [Float]?

    package init(outputs: Int, weights: [Float], bias: [Float]?) {
        self.outputs = outputs
        self.weights = weights
        self.bias = bias
    }
    package var inputs: Int { weights.count / max(1, outputs) }
}

package struct LRN: Sendable, Equatable {
    package enum Region: String, Sendable { case acrossChannels = "ACROSS_CHANNELS", withinChannel = "WITHIN_CHANNEL" }
    package var region: Region
    package var size: Int
    package var alpha: Float
    package var beta: Float
    package var k: Float

    package init(region: Region, size: Int, alpha: Float, beta: Float, k: Float) {
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
package struct BatchNorm: Sendable, Equatable {
    package var mean: [Float]
    package var variance: [Float]
    package var eps: Float
    package var scale: [Float]?
    package var bias: [Float]?

    package init(mean: [Float], variance: [Float], eps: Float, scale: [Float]? = nil, bias: [Float]? = nil) {
        self.mean = mean
        self.variance = variance
        self.eps = eps
        self.scale = scale
        self.bias = bias
    }
}

/// Per-channel `y = x · scale + bias` (Caffe's Scale layer with axis 1).
package struct Scale: Sendable, Equatable {
    package var scale: [Float]
    package var bias: [Float]?

    package init(scale: [Float], bias: [Float]?) {
        self.scale = scale
        self.bias = bias
    }
}

package struct Eltwise: Sendable, Equatable {
    package enum Operation: String, Sendable { case product = "PROD", sum = "SUM", max = "MAX" }
    package var operation: Operation
    /// Per-bottom coefficients for SUM (empty: all 1).
    package var coefficients: [Float]

    package init(operation: Operation, coefficients: [Float] = []) {
        self.operation = operation
        self.coefficients = coefficients
    }
}
