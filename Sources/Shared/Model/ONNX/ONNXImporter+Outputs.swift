import Foundation
import TesseraCore

/// Which graph output Tessera maps, and which nodes compute it. A graph with several outputs
/// (probabilities and logits, an auxiliary head, features beside the scores) was refused, and a
/// node nothing reads was refused or run depending on where it stood in the file (ONNX user
/// audit). Now the one output that ends in a Softmax, LogSoftmax or Sigmoid is mapped, and the
/// nodes it does not need are left out, with a note naming them.
extension ONNXImporter {
    /// Operators that pass their first input's values on (for telling what an output ends in).
    static let passThrough: Set<String> = ["Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Cast"]
    /// Operators whose output is a map of probabilities.
    static let probabilityOperators: Set<String> = ["Softmax", "LogSoftmax", "Sigmoid"]

    /// The output to map and, per node of the graph, whether computing it needs the node.
    mutating func chooseOutput(_ graph: Onnx_GraphProto, input: String) throws -> (String, [Bool]) {
        // ONNX names each tensor once: checked over the whole graph, used or not, before anything is
        // left out (a later node would read one of two tensors of one name).
        var producer: [String: Int] = [:]
        for (index, node) in graph.node.enumerated() {
            let n = NodeContext(node: node, name: node.name.isEmpty ? "\(node.opType)_\(index)" : node.name, file: file)
            for out in node.output where !out.isEmpty {
                if out == input { throw n.fail(.invalid, "its output '\(out)' is the graph's input") }
                if initializers[out] != nil {
                    throw n.fail(.invalid, "its output '\(out)' is also an initializer's name")
                }
                if producer[out] != nil {
                    throw n.fail(.invalid, "its output '\(out)' is also produced by an earlier node")
                }
                producer[out] = index
            }
        }
        /// The operator an output's values come from, past pass-through nodes. Each tensor's answer is
        /// kept: thousands of outputs over one long chain of Identity nodes took minutes (review).
        var known: [String: String?] = [:]
        func source(_ name: String) -> String? {
            var chain: [String] = []
            var current = name
            var answer: String?
            for _ in 0...graph.node.count {
                if let memo = known[current] {
                    answer = memo
                    break
                }
                guard let index = producer[current] else { break }
                let node = graph.node[index]
                guard Self.passThrough.contains(node.opType), let first = node.input.first else {
                    answer = node.opType
                    break
                }
                chain.append(current)
                current = first
            }
            for tensor in chain + [current] { known[tensor] = answer }
            return answer
        }
        let names = graph.output.map(\.name)
        let listed = names.map { "'\($0)'" }.joined(separator: ", ")
        let output: String
        switch names.count {
        case 0: throw ModelError(.unsupported, file: file, "the graph has no output: it computes nothing")
        case 1: output = names[0]
        default:
            let scores = names.filter { source($0).map(Self.probabilityOperators.contains) ?? false }
            guard scores.count == 1, let chosen = scores.first else {
                throw ModelError(
                    .unsupported, file: file,
                    "the graph has \(names.count) outputs (\(listed)); Tessera maps one, the class scores, and "
                        + (scores.isEmpty
                            ? "none of them ends in a Softmax, LogSoftmax or Sigmoid"
                            : "\(scores.count) of them end in a Softmax, LogSoftmax or Sigmoid")
                        + ": keep only the one to map, e.g. python3 -c \"import onnx.utils; "
                        // The real names, not placeholders (audit 44 D7).
                        + "onnx.utils.extract_model('\(file)', '\((file as NSString).deletingPathExtension)"
                        + ".one-output.onnx', ['\(input)'], ['\(scores.first ?? names[0])'])\"")
            }
            output = chosen
            notes.append(
                "\(file): the graph has \(names.count) outputs (\(listed)): Tessera maps '\(chosen)', the one that "
                    + "ends in \(source(chosen)!), and leaves out the others")
        }
        // Every node the output depends on, through all of its inputs (weights, shape arithmetic).
        var needed = [Bool](repeating: false, count: graph.node.count)
        var pending = [output]
        while let name = pending.popLast() {
            guard let index = producer[name], !needed[index] else { continue }
            needed[index] = true
            pending += graph.node[index].input.filter { !$0.isEmpty }
        }
        let unused = graph.node.indices.filter { !needed[$0] }
        if !unused.isEmpty {
            let named = unused.prefix(5).map {
                graph.node[$0].name.isEmpty ? graph.node[$0].opType : graph.node[$0].name
            }
            notes.append(
                "\(file): \(unused.count) node\(unused.count == 1 ? "" : "s") the output '\(output)' does not need "
                    + "left out (\(named.joined(separator: ", "))\(unused.count > 5 ? ", …" : ""))")
        }
        return (output, needed)
    }
}
