import Foundation
import TesseraCore

/// The refusal of an operator Tessera does not run (user audit F10): constant folding is
/// suggested only where it can remove the node (its inputs are constants, or it computes
/// shapes); otherwise the engine has no such layer. A Transpose is most often the layout
/// change of a channels-last (NHWC) model.
extension ONNXImporter {
    /// Operators that compute shapes, indices or masks rather than activations.
    static let shapeOperators: Set<String> = [
        "ConstantOfShape", "Range", "Size", "Expand", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
        "Not", "And", "Or", "Where", "NonZero", "ScatterND", "ScatterElements", "ReduceProd",
    ]

    func unsupportedOperator(_ n: NodeContext) -> ModelError {
        let op = n.node.opType
        let inputs = n.node.input.filter { !$0.isEmpty }
        let runs = "Tessera runs \(Self.supported.joined(separator: ", "))"
        if !inputs.isEmpty, inputs.allSatisfy(isConstant) {
            return n.fail(
                .unsupported,
                "Tessera does not evaluate this operator, and its inputs are all constants: constant-fold the "
                    + "model first (torch.onnx.export(do_constant_folding=True), onnxsim). \(runs)")
        }
        if op == "Transpose" {
            return n.fail(
                .unsupported,
                "Tessera does not run Transpose (perm \(n.ints("perm").map { "\($0)" } ?? "reversed")); this one "
                    + "looks like the layout change of a channels-last (NHWC) model, as Keras/tf2onnx export them. "
                    + "Tessera runs N×C×H×W (NCHW) models: export it as NCHW (tf2onnx --inputs-as-nchw INPUT). The "
                    + "one Transpose it folds is a Keras Flatten's: perm [0, 2, 3, 1] of the activations, then a "
                    + "Flatten (or Reshape) and a Gemm/MatMul")
        }
        if Self.shapeOperators.contains(op) {
            return n.fail(
                .unsupported,
                "Tessera does not run this operator, which computes shapes or indices here: constant-fold the "
                    + "model with a fixed input shape (onnxsim --overwrite-input-shape 1,C,P,P), or export it "
                    + "without it (torch.flatten(x, 1) for a flatten). \(runs)")
        }
        return n.fail(
            .unsupported,
            "the engine has no such layer, so Tessera does not run this operator: export the model without it. "
                + runs)
    }
}
