import Foundation
import TesseraCore

/// One node and its attributes, for reading them and for messages that name it.
struct NodeContext {
    let node: Onnx_NodeProto
    let name: String
    let file: String
    let attributes: [String: Onnx_AttributeProto]

    init(node: Onnx_NodeProto, name: String, file: String) {
        self.node = node
        self.name = name
        self.file = file
        var a: [String: Onnx_AttributeProto] = [:]
        for attr in node.attribute { a[attr.name] = attr }
        attributes = a
    }

    func fail(_ kind: ModelError.Kind, _ message: String) -> ModelError {
        ModelError(kind, file: file, "node '\(name)' (\(node.opType)): \(message)")
    }

    func int(_ key: String) -> Int? {
        guard let a = attributes[key], a.type == .int || (a.type == .undefined && a.hasI) else { return nil }
        return Int(clamping: a.i)
    }
    func ints(_ key: String) -> [Int]? {
        guard let a = attributes[key], a.type == .ints || (a.type == .undefined && !a.ints.isEmpty) else { return nil }
        return a.ints.map { Int(clamping: $0) }
    }
    func float(_ key: String) -> Float? {
        guard let a = attributes[key], a.type == .float || (a.type == .undefined && a.hasF) else { return nil }
        return a.f
    }
    func string(_ key: String) -> String? {
        guard let a = attributes[key], a.type == .string || (a.type == .undefined && a.hasS) else { return nil }
        return String(decoding: a.s, as: UTF8.self)
    }
}
