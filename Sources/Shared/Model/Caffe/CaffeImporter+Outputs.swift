import TesseraCore

/// Which of a net's outputs is the map. Caffe's outputs are the blobs no later layer reads; Tessera maps
/// one, the class scores. The last layer's was taken without a word, so a side output written after
/// the Softmax (a feature ReLU) became a 10-"class" map (Caffe audit). Now, with several outputs, the
/// one a Softmax or Sigmoid makes is mapped, and the layers only the others need are left out, with a
/// note; when none or several are, the net is refused, naming them.
extension CaffeImporter {
    mutating func chooseOutput(_ layers: [Layer]) throws -> [Layer] {
        // The outputs: blobs whose last version no later layer reads (an in-place layer makes a new version).
        var unread: [String: Int] = [:]  // blob → index of the layer that last wrote it, while unread
        for (index, layer) in layers.enumerated() {
            for b in layer.bottoms { unread[b] = nil }
            for t in layer.tops { unread[t] = index }
        }
        guard unread.count > 1 else { return layers }
        let outputs = unread.sorted { $0.value < $1.value }
        let listed = outputs.map { "'\($0.key)'" }.joined(separator: ", ")
        let scores = outputs.filter { layers[$0.value].op == .softmax || layers[$0.value].op == .sigmoid }
        // Two Softmax layers of one input (the seed's fcn-batchnorm has 'softmax' and 'prob') compute one map.
        let same = scores.dropFirst().allSatisfy {
            layers[$0.value].op == layers[scores[0].value].op
                && layers[$0.value].bottoms == layers[scores[0].value].bottoms
        }
        guard scores.count == 1 || (same && !scores.isEmpty), let chosen = scores.last else {
            throw ModelError(
                file: definitionFile,
                "the net has \(outputs.count) outputs (blobs no layer reads: \(listed)); Tessera maps one, the class "
                    + "scores, and \(scores.isEmpty ? "none of them is" : "\(scores.count) of them are") made by a "
                    + "Softmax or Sigmoid (of different inputs): remove the layers of the others from the deploy prototxt"
            )
        }
        // Backwards from the chosen blob: the layers that write what is needed.
        var needed: Set<String> = [chosen.key]
        var keep = [Bool](repeating: false, count: layers.count)
        for index in layers.indices.reversed() where index <= chosen.value {
            let layer = layers[index]
            guard layer.tops.contains(where: needed.contains) else { continue }
            keep[index] = true
            for t in layer.tops where !layer.bottoms.contains(t) { needed.remove(t) }
            needed.formUnion(layer.bottoms)
        }
        let dropped = layers.indices.filter { !keep[$0] }.map { layers[$0].name }
        notes.append(
            "the net has \(outputs.count) outputs (\(listed)): Tessera maps '\(chosen.key)' (made by "
                + "\(layers[chosen.value].op.typeName) '\(layers[chosen.value].name)') and leaves out the layers only "
                + "the others need (\(dropped.joined(separator: ", ")))")
        return layers.indices.filter { keep[$0] }.map { layers[$0] }
    }
}
