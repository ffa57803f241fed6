import Foundation
import SwiftProtobuf
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Real model files the mutators start from: the fixtures, the demo model and,
/// when present, the seed models next to the package (never committed).
enum ModelFuzzSeeds {
    struct Model {
        var name: String
        var prototxt: String?
        var caffemodel: [UInt8]?
    }

    static let packageRoot = TestPaths.packageRoot

    static let all: [Model] = {
        var models: [Model] = []
        func text(_ url: URL) -> String? { try? String(contentsOf: url, encoding: .utf8) }
        func bytes(_ url: URL) -> [UInt8]? { (try? Data(contentsOf: url)).map { [UInt8]($0) } }
        let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []).sorted()
        for name in names {
            let dir = fixtures.appendingPathComponent(name)
            guard let p = text(dir.appendingPathComponent("deploy.prototxt")) else { continue }
            models.append(
                Model(name: name, prototxt: p, caffemodel: bytes(dir.appendingPathComponent("weights.caffemodel"))))
        }
        let demo = packageRoot.appendingPathComponent("models/demo")
        models.append(
            Model(
                name: "demo", prototxt: text(demo.appendingPathComponent("deploy.prototxt")),
                caffemodel: bytes(demo.appendingPathComponent("nuclei32.caffemodel"))))
        // Seed models: every prototxt; their caffemodels are large, so they are
        // mutated less often (see `caffemodelWeight`).
        let seed = URL(fileURLWithPath: Seed.root.path)
        for model in ((try? FileManager.default.contentsOfDirectory(atPath: seed.path)) ?? []).sorted() {
            let dir = seed.appendingPathComponent(model)
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
            let weights = files.first { $0.hasSuffix(".caffemodel") }.flatMap { bytes(dir.appendingPathComponent($0)) }
            let prototxts = files.filter { $0.hasSuffix(".prototxt") }
            for p in prototxts {
                models.append(
                    Model(
                        name: "seed/\(model)/\(p)", prototxt: text(dir.appendingPathComponent(p)),
                        caffemodel: p == prototxts.first ? weights : nil))
            }
            if prototxts.isEmpty, let weights {
                models.append(Model(name: "seed/\(model)", prototxt: nil, caffemodel: weights))
            }
        }
        return models
    }()

    static var prototxts: [String] { all.compactMap(\.prototxt) }

    /// Identifiers of the seed texts (field names, enum values, layer types) to swap in.
    static let identifiers: [String] = {
        var set = Set<String>()
        for text in prototxts {
            var word = ""
            for ch in text.unicodeScalars {
                if CharacterSet.alphanumerics.contains(ch) || ch == "_" {
                    word.unicodeScalars.append(ch)
                } else {
                    if let f = word.unicodeScalars.first, CharacterSet.letters.contains(f) { set.insert(word) }
                    word = ""
                }
            }
        }
        return set.sorted() + [
            "Input", "Convolution", "Pooling", "InnerProduct", "Concat", "Eltwise", "Softmax",
            "SoftmaxWithLoss", "BatchNorm", "Scale", "LRN", "Split", "Dropout", "Data",
            "MemoryData", "STOCHASTIC", "PROD", "MAX", "AVE", "WITHIN_CHANNEL", "TRAIN", "TEST",
        ]
    }()
}

/// Mutates deploy prototxts: numbers replaced by hostile ones, fields inserted,
/// layer blocks duplicated or dropped, identifiers swapped, bytes damaged.
enum PrototxtMutator {
    static let numbers = [
        "0", "-1", "1", "2", "3", "-0", "65535", "65536", "65537", "1048576", "1048577", "2147483647", "2147483648",
        "-2147483648", "4294967295", "4294967296", "9223372036854775807", "9223372036854775808",
        "18446744073709551615", "18446744073709551616", "99999999999999999999999", "1e30", "-1e30", "1e-45", "nan",
        "inf", "-inf", "3.5", "0x10", "010", "1e", "--1", "0.0", "268435456", "33554432",
    ]

    /// Fields that make parseable but absurd layers.
    static let fields = [
        "kernel_size: 0", "kernel_size: 65536", "kernel_size: 4294967295", "kernel_h: 0", "kernel_w: 3",
        "stride: 0", "stride: 65536", "stride_h: 65536", "stride_w: 1", "pad: 65536", "pad: 4294967295",
        "pad_h: 1", "dilation: 0", "dilation: 65536", "group: 0", "group: 3", "group: 4294967295",
        "num_output: 0", "num_output: 2147483648", "num_output: 4294967295", "num_output: 268435456",
        "axis: 0", "axis: 2", "axis: -1", "transpose: true", "bias_term: false", "global_pooling: true",
        "pool: STOCHASTIC", "local_size: 4", "local_size: 4294967295", "norm_region: WITHIN_CHANNEL",
        "operation: PROD", "operation: MAX", "coeff: 2", "concat_dim: 2", "dim: 0", "dim: -1", "dim: 1048577",
        "dim: 9223372036854775807", "input_dim: 1", "input_dim: 0", "include { phase: TRAIN }",
        "exclude { phase: TEST }", "include { min_level: 1 }", "phase: TRAIN", "bottom: \"data\"", "top: \"data\"",
        "bottom: \"label\"", "top: \"x\"", "num_axes: 2", "eps: 0", "use_global_stats: false", "crop_size: 0",
        "crop_size: 4294967295", "crop_size: 65537", "transform_param { crop_size: 100000 }",
        "input_shape { dim: 1 dim: 3 dim: 1048576 dim: 1048576 }", "input_shape { dim: 1 dim: 0 dim: 2 dim: 2 }",
        "input_param { shape { dim: 1 dim: 1 dim: 1 dim: 1 } }", "negative_slope: nan", "engine: CUDNN",
    ]

    /// Whole layers that stress arithmetic when inserted anywhere.
    static let layers = [
        "layer { name: \"fz\" type: \"Convolution\" bottom: \"data\" top: \"fz\" convolution_param { num_output: 1 kernel_size: 1 stride: 65536 } }",
        "layer { name: \"fz\" type: \"Pooling\" bottom: \"data\" top: \"fz\" pooling_param { pool: MAX kernel_size: 1 stride: 65536 } }",
        "layer { name: \"fz\" type: \"Pooling\" bottom: \"data\" top: \"fz\" pooling_param { pool: AVE global_pooling: true } }",
        "layer { name: \"fz\" type: \"InnerProduct\" bottom: \"data\" top: \"fz\" inner_product_param { num_output: 65536 } }",
        "layer { name: \"fz\" type: \"Concat\" bottom: \"data\" bottom: \"data\" bottom: \"data\" top: \"fz\" }",
        "layer { name: \"fz\" type: \"Eltwise\" bottom: \"data\" bottom: \"fz\" top: \"fz\" }",
        "layer { name: \"fz\" type: \"LRN\" bottom: \"data\" top: \"fz\" lrn_param { local_size: 65535 norm_region: WITHIN_CHANNEL } }",
        "layer { name: \"fz\" type: \"Input\" top: \"data\" input_param { shape { dim: 1 dim: 3 dim: 1048576 dim: 1048576 } } }",
        "layer { name: \"fz\" type: \"Convolution\" bottom: \"data\" top: \"fz\" convolution_param { num_output: 65536 kernel_size: 1 dilation: 65536 } }",
        "layers { name: \"fz\" type: CONVOLUTION bottom: \"data\" top: \"fz\" convolution_param { num_output: 1 kernel_size: 1 } }",
    ]

    /// Layers appended in place on the net's output, 1–5 times: chains of absurd
    /// strides, dilations and widths that each layer alone would not reveal.
    /// `@` is the blob, `#` the layer's name.
    static let chain = [
        "layer { name: \"#\" type: \"Convolution\" bottom: \"@\" top: \"@\" convolution_param { num_output: 1 kernel_size: 1 stride: 65536 } }",
        "layer { name: \"#\" type: \"Convolution\" bottom: \"@\" top: \"@\" convolution_param { num_output: 1 kernel_h: 65536 kernel_w: 1 dilation: 65536 } }",
        "layer { name: \"#\" type: \"Convolution\" bottom: \"@\" top: \"@\" convolution_param { num_output: 65536 kernel_size: 1 pad: 65536 } }",
        "layer { name: \"#\" type: \"Convolution\" bottom: \"@\" top: \"@\" convolution_param { num_output: 2 group: 2 kernel_size: 1 } }",
        "layer { name: \"#\" type: \"Pooling\" bottom: \"@\" top: \"@\" pooling_param { pool: MAX kernel_size: 1 stride: 65536 } }",
        "layer { name: \"#\" type: \"Pooling\" bottom: \"@\" top: \"@\" pooling_param { pool: AVE kernel_size: 65536 pad: 65535 stride: 3 } }",
        "layer { name: \"#\" type: \"Pooling\" bottom: \"@\" top: \"@\" pooling_param { pool: AVE global_pooling: true } }",
        "layer { name: \"#\" type: \"InnerProduct\" bottom: \"@\" top: \"@\" inner_product_param { num_output: 65536 } }",
        "layer { name: \"#\" type: \"InnerProduct\" bottom: \"@\" top: \"@\" inner_product_param { num_output: 3 transpose: true } }",
        "layer { name: \"#\" type: \"Concat\" bottom: \"@\" bottom: \"@\" bottom: \"@\" bottom: \"@\" top: \"@\" }",
        "layer { name: \"#\" type: \"Eltwise\" bottom: \"@\" bottom: \"@\" top: \"@\" eltwise_param { operation: PROD } }",
        "layer { name: \"#\" type: \"LRN\" bottom: \"@\" top: \"@\" lrn_param { local_size: 65535 norm_region: WITHIN_CHANNEL } }",
        "layer { name: \"#\" type: \"BatchNorm\" bottom: \"@\" top: \"@\" }",
        "layer { name: \"#\" type: \"Scale\" bottom: \"@\" top: \"@\" scale_param { bias_term: true } }",
        "layer { name: \"#\" type: \"Softmax\" bottom: \"@\" top: \"@\" }",
    ]

    /// Blobs with hostile shapes, inserted into a layer (a prototxt may carry its weights).
    static let blobs = [
        "blobs { shape { dim: 2147483648 dim: 0 dim: 65536 dim: 65536 } }",
        "blobs { shape { dim: 0 } }", "blobs { shape { dim: 1 dim: 1 dim: 1 dim: 1 } data: 1 }",
        "blobs { shape { dim: -1 dim: -1 } }", "blobs { num: 65536 channels: 65536 height: 0 width: 1 }",
        "blobs { shape { dim: 3 } data: 1 data: 2 }", "blobs { double_data: 1e300 double_data: nan }",
        "blobs { shape { dim: 9223372036854775807 dim: 2 } }",
    ]

    static func appendChain(_ b: inout [UInt8], _ rng: inout SplitMix64) {
        let text = String(decoding: b, as: UTF8.self)
        var blob = "data"
        if let r = text.range(of: "top: \"", options: .backwards),
            let end = text[r.upperBound...].firstIndex(of: "\"")
        {
            blob = String(text[r.upperBound..<end])
        }
        let template = rng.pick(chain)
        var added = "\n"
        for i in 0..<(1 + rng.int(5)) {
            added +=
                template.replacingOccurrences(of: "@", with: blob).replacingOccurrences(of: "#", with: "fz\(i)") + "\n"
        }
        b += Array(added.utf8)
    }

    static func insertBlob(_ b: inout [UInt8], _ rng: inout SplitMix64) {
        let text = String(decoding: b, as: UTF8.self)
        let layerStarts = text.ranges(of: "layer {").map {
            text.utf8.distance(from: text.utf8.startIndex, to: $0.upperBound.samePosition(in: text.utf8)!)
        }
        guard !layerStarts.isEmpty else { return }
        let at = rng.pick(layerStarts)
        b.insert(contentsOf: Array((" " + rng.pick(blobs) + " ").utf8), at: at)
    }

    static func mutate(_ seed: String, _ rng: inout SplitMix64, donors: [[UInt8]]) -> [UInt8] {
        var bytes = Array(seed.utf8)
        for _ in 0..<(1 + rng.int(4)) {
            switch rng.int(14) {
            case 12: appendChain(&bytes, &rng)
            case 13: insertBlob(&bytes, &rng)
            case 0, 1, 2, 3: replaceNumber(&bytes, &rng)
            case 4: insertLine(&bytes, rng.pick(fields), &rng)
            case 5: insertLine(&bytes, rng.pick(layers), &rng)
            case 6: replaceIdentifier(&bytes, &rng)
            case 7: duplicateOrDropBlock(&bytes, &rng)
            case 8:  // splice a layer from another model
                let donor = rng.pick(donors)
                if let block = randomBlock(donor, &rng) {
                    insertLine(&bytes, String(decoding: donor[block], as: UTF8.self), &rng)
                }
            default: ByteMutation.mutate(&bytes, &rng, donors: donors)
            }
        }
        return bytes
    }

    /// Ranges of the numeric tokens (a digit or a sign/dot before a digit).
    static func numberRanges(_ b: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        while i < b.count {
            let startsNumber = isDigit(b[i]) || ((b[i] == 0x2D || b[i] == 0x2E) && i + 1 < b.count && isDigit(b[i + 1]))
            let afterIdent = i > 0 && (b[i - 1] == 0x5F || (b[i - 1] | 0x20 >= 0x61 && b[i - 1] | 0x20 <= 0x7A))
            if startsNumber, !afterIdent {
                let s = i
                i += 1
                while i < b.count, isDigit(b[i]) || b[i] == 0x2E || b[i] == 0x65 || b[i] == 0x45 { i += 1 }
                out.append(s..<i)
            } else {
                i += 1
            }
        }
        return out
    }

    static func replaceNumber(_ b: inout [UInt8], _ rng: inout SplitMix64) {
        let ranges = numberRanges(b)
        guard !ranges.isEmpty else { return }
        let r = rng.pick(ranges)
        let value = rng.chance(4) ? String(rng.int(rng.pick([3, 10, 300, 70000]))) : rng.pick(numbers)
        b.replaceSubrange(r, with: Array(value.utf8))
    }

    static func replaceIdentifier(_ b: inout [UInt8], _ rng: inout SplitMix64) {
        var ranges: [Range<Int>] = []
        var i = 0
        func isLetter(_ c: UInt8) -> Bool { (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || c == 0x5F }
        while i < b.count {
            if isLetter(b[i]) {
                let s = i
                while i < b.count, isLetter(b[i]) || (b[i] >= 0x30 && b[i] <= 0x39) { i += 1 }
                ranges.append(s..<i)
            } else {
                i += 1
            }
        }
        guard !ranges.isEmpty else { return }
        b.replaceSubrange(rng.pick(ranges), with: Array(rng.pick(ModelFuzzSeeds.identifiers).utf8))
    }

    /// Inserts `line` after a random newline (inside some block or at the top level).
    static func insertLine(_ b: inout [UInt8], _ line: String, _ rng: inout SplitMix64) {
        let newlines = b.indices.filter { b[$0] == 0x0A }
        let at = newlines.isEmpty ? b.count : rng.pick(newlines) + 1
        b.insert(contentsOf: Array((line + "\n").utf8), at: min(at, b.count))
    }

    /// A balanced `name { … }` block (a layer or a param message) of `b`.
    static func randomBlock(_ b: [UInt8], _ rng: inout SplitMix64) -> Range<Int>? {
        let opens = b.indices.filter { b[$0] == UInt8(ascii: "{") }
        guard !opens.isEmpty else { return nil }
        let open = rng.pick(opens)
        var start = open
        while start > 0, b[start - 1] != 0x0A { start -= 1 }
        var depth = 0
        for i in open..<b.count {
            if b[i] == UInt8(ascii: "{") { depth += 1 }
            if b[i] == UInt8(ascii: "}") {
                depth -= 1
                if depth == 0 { return start..<(i + 1) }
            }
        }
        return nil
    }

    static func duplicateOrDropBlock(_ b: inout [UInt8], _ rng: inout SplitMix64) {
        guard let r = randomBlock(b, &rng) else { return }
        if rng.chance(2) {
            b.removeSubrange(r)
        } else {
            let copy = Array(b[r])
            b.insert(contentsOf: copy + [0x0A], at: rng.chance(2) ? r.lowerBound : r.upperBound)
        }
    }
}

/// Mutates protobuf binary messages through their wire structure, so that a
/// changed varint or a dropped field keeps every enclosing length consistent
/// and the decoder reaches the importer; raw byte damage (length lies) on top.
enum ProtobufMutator {
    indirect enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes([UInt8])
        case message([Field])
    }

    struct Field {
        var number: UInt64
        var value: Value
    }

    static func readVarint(_ b: [UInt8], _ i: inout Int) -> UInt64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while i < b.count, shift < 64 {
            let byte = b[i]
            i += 1
            v |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return v }
            shift += 7
        }
        return nil
    }

    /// The fields of `b`, or nil if it is not a well-formed message. Nested
    /// length-delimited values that parse as messages become messages.
    static func parse(_ b: [UInt8], depth: Int = 0) -> [Field]? {
        var fields: [Field] = []
        var i = 0
        while i < b.count {
            guard let key = readVarint(b, &i), key >> 3 > 0 else { return nil }
            let number = key >> 3
            switch key & 7 {
            case 0:
                guard let v = readVarint(b, &i) else { return nil }
                fields.append(Field(number: number, value: .varint(v)))
            case 1:
                guard i + 8 <= b.count else { return nil }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
                i += 8
                fields.append(Field(number: number, value: .fixed64(v)))
            case 2:
                guard let n = readVarint(b, &i), n <= UInt64(b.count - i) else { return nil }
                let body = Array(b[i..<(i + Int(n))])
                i += Int(n)
                // Packed floats (blob data) are left as bytes: cheaper, and their
                // content is never structure.
                if depth < 8, body.count < 4096 || number != 5, let nested = parse(body, depth: depth + 1),
                    !nested.isEmpty
                {
                    fields.append(Field(number: number, value: .message(nested)))
                } else {
                    fields.append(Field(number: number, value: .bytes(body)))
                }
            case 5:
                guard i + 4 <= b.count else { return nil }
                var v: UInt32 = 0
                for k in 0..<4 { v |= UInt32(b[i + k]) << (8 * UInt32(k)) }
                i += 4
                fields.append(Field(number: number, value: .fixed32(v)))
            default:
                return nil
            }
        }
        return fields
    }

    static func varint(_ v: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }

    static func serialize(_ fields: [Field]) -> [UInt8] {
        var out: [UInt8] = []
        for f in fields {
            switch f.value {
            case .varint(let v):
                out += varint(f.number << 3) + varint(v)
            case .fixed64(let v):
                out += varint(f.number << 3 | 1) + (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
            case .fixed32(let v):
                out += varint(f.number << 3 | 5) + (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) }
            case .bytes(let b):
                out += varint(f.number << 3 | 2) + varint(UInt64(b.count)) + b
            case .message(let m):
                let body = serialize(m)
                out += varint(f.number << 3 | 2) + varint(UInt64(body.count)) + body
            }
        }
        return out
    }

    /// Number of fields in the tree (for picking one uniformly).
    static func count(_ fields: [Field]) -> Int {
        fields.reduce(0) { n, f in
            if case .message(let m) = f.value { return n + 1 + count(m) }
            return n + 1
        }
    }

    /// Applies `change` to the `target`-th field (pre-order) of the tree, with its siblings.
    static func visit(
        _ fields: inout [Field], _ target: inout Int,
        _ change: (inout [Field], Int) -> Void
    ) -> Bool {
        var i = 0
        while i < fields.count {
            if target == 0 {
                change(&fields, i)
                return true
            }
            target -= 1
            if case .message(var m) = fields[i].value {
                if visit(&m, &target, change) {
                    fields[i].value = .message(m)
                    return true
                }
            }
            i += 1
        }
        return false
    }

    static let floats: [UInt32] = [
        0, 0x8000_0000, 0x3F80_0000, 0xBF80_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000,
        0x7F7F_FFFF, 0x0000_0001, 0x4F00_0000,
    ]

    static func mutate(_ tree: [Field], _ rng: inout SplitMix64, donors: [[Field]]) -> [Field] {
        var tree = tree
        for _ in 0..<(1 + rng.int(3)) {
            var target = rng.int(max(1, count(tree)))
            let choice = rng.int(9)
            var donorField: Field?
            if choice == 6, let donor = donors.isEmpty ? nil : rng.pick(donors), !donor.isEmpty {
                // A random field of another message, at any depth.
                var pickIndex = rng.int(count(donor))
                var d = donor
                _ = visit(&d, &pickIndex) { siblings, i in donorField = siblings[i] }
            }
            let interesting = rng.interesting()
            let small = UInt64(rng.int(5))
            let float = rng.pick(floats)
            let cut = rng.next()
            let newNumber = UInt64(1 + rng.int(rng.chance(2) ? 12 : 120))
            _ = visit(&tree, &target) { siblings, i in
                switch choice {
                case 0, 1, 2:  // a varint becomes a hostile value (dims, sizes, enums, counts)
                    if case .varint = siblings[i].value {
                        siblings[i].value = .varint(choice == 2 ? small : interesting)
                    } else if case .fixed32 = siblings[i].value {
                        siblings[i].value = .fixed32(float)
                    } else if case .bytes(let b) = siblings[i].value, b.count >= 4 {
                        // packed floats or a string: overwrite one aligned word
                        var b = b
                        let at = Int(cut % UInt64(b.count / 4)) * 4
                        for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: float >> (8 * UInt32(k))) }
                        siblings[i].value = .bytes(b)
                    }
                case 3:  // drop the field
                    siblings.remove(at: i)
                case 4:  // duplicate it (repeated dims, blobs, layers)
                    siblings.insert(siblings[i], at: i)
                case 5:  // truncate a string/packed/bytes value
                    if case .bytes(let b) = siblings[i].value, !b.isEmpty {
                        siblings[i].value = .bytes(Array(b.prefix(Int(cut % UInt64(b.count)))))
                    } else if case .message(let m) = siblings[i].value, !m.isEmpty {
                        siblings[i].value = .message(Array(m.prefix(Int(cut % UInt64(m.count)))))
                    }
                case 6:  // splice in a field of another message
                    if let donorField { siblings.insert(donorField, at: i) }
                case 7:  // renumber (the value now means something else)
                    siblings[i].number = newNumber
                default:  // a message flattened to bytes, or bytes replaced by a small message
                    if case .message(let m) = siblings[i].value {
                        siblings[i].value = .bytes(serialize(m))
                    } else {
                        siblings[i].value = .message([Field(number: newNumber, value: .varint(interesting))])
                    }
                }
            }
        }
        return tree
    }
}

/// One entry of the model corpus: a definition and, when known, its caffemodel.
private struct ModelCase {
    var name: String
    var definition: Caffe_NetParameter?
    var weights: Caffe_NetParameter?
}

/// Runs what a mutated model goes through in `tessera inspect`/`run`: import,
/// patch size, net surgery, geometry, shape inference at the declared input,
/// the report. Returns normally or throws a `ModelError`; any other error is a
/// finding.
private func exerciseModel(
    definition: Caffe_NetParameter, file: String, holdsWeights: Bool,
    weights: Caffe_NetParameter?, patchSize: Int?
) throws -> FuzzOutcome {
    do {
        let loaded = try ModelLoader.load(
            definition: definition, definitionFile: file,
            definitionHoldsWeights: holdsWeights, weights: weights,
            weightsFile: weights == nil ? nil : "weights.caffemodel",
            patchSize: patchSize, placeholderLimit: 1 << 22)
        try? loaded.requireExact(allowApproximate: false)
        // The report's per-layer arithmetic (MACs, strides), as `inspect` computes it.
        _ = try ModelReport(model: loaded, preprocessing: Preprocessing())
        if let full = loaded.declaredInput {
            _ = try? loaded.net.shapes(input: full)
        }
        return .accepted
    } catch let e as ModelError {
        guard !e.message.isEmpty else { throw FuzzInvariantError("a ModelError without a message") }
        return .rejected("model")
    }
}

@Suite("Model parser fuzzing")
struct ModelFuzzTests {
    @Test("≥100 000 mutated prototxts: parse, import, surgery, shapes — errors only, never a crash")
    func prototxt() throws {
        let seeds = ModelFuzzSeeds.all.filter { $0.prototxt != nil }
        try #require(seeds.count >= 7, "the fixture and demo prototxts are the fuzz seeds")
        let weights = seeds.map { $0.caffemodel.flatMap { try? Caffe_NetParameter(serializedBytes: $0) } }
        let donors = seeds.map { Array($0.prototxt!.utf8) }
        // Text decoding dominates the cost: the large seed prototxts (training nets) are picked 1 time in 4.
        let small = seeds.indices.filter { seeds[$0].prototxt!.utf8.count <= 2_500 }
        let large = seeds.indices.filter { seeds[$0].prototxt!.utf8.count > 2_500 }
        var lastSeed = 0
        let summary = runFuzz(target: "prototxt", seed: 0x9E0_7E57, iterations: 100_000) { rng, _ in
            lastSeed = large.isEmpty || !rng.chance(4) ? rng.pick(small) : rng.pick(large)
            return PrototxtMutator.mutate(seeds[lastSeed].prototxt!, &rng, donors: donors)
        } body: { input in
            let text = String(decoding: input, as: UTF8.self)
            var ignored: [String] = []
            let net: Caffe_NetParameter
            do {
                net = try CaffeFiles.parsePrototxt(text, file: "deploy.prototxt", ignored: &ignored)
            } catch let e as ModelError {
                guard e.message.count > 10 else { throw FuzzInvariantError("undescriptive error: \(e)") }
                return .rejected("parse")
            }
            // Shape-only (what `inspect` does without weights), then with the seed's real weights.
            let outcome = try exerciseModel(
                definition: net, file: "deploy.prototxt", holdsWeights: false,
                weights: nil, patchSize: nil)
            if let w = weights[lastSeed] {
                _ = try exerciseModel(
                    definition: net, file: "deploy.prototxt", holdsWeights: false, weights: w,
                    patchSize: nil)
            }
            return outcome
        }
        #expect(summary.inputs == FuzzEnvironment.iterations(default: 100_000) || FuzzEnvironment.onlyIndex != nil)
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil, "some mutants should still load")
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }

    @Test("≥100 000 mutated caffemodels: decode, import (alone and with the prototxt), surgery — never a crash")
    func caffemodel() throws {
        let seeds = ModelFuzzSeeds.all.filter { $0.caffemodel != nil }
        try #require(seeds.count >= 7, "the fixture and demo caffemodels are the fuzz seeds")
        var ignored: [String] = []
        let definitions = seeds.map { s in
            s.prototxt.flatMap { try? CaffeFiles.parsePrototxt($0, file: "deploy.prototxt", ignored: &ignored) }
        }
        let trees = seeds.map { ProtobufMutator.parse($0.caffemodel!) ?? [] }
        // Large caffemodels (the demo, the seed models) cost 100× a fixture to decode: pick them rarely.
        let small = seeds.indices.filter { seeds[$0].caffemodel!.count < 16_384 }
        let large = seeds.indices.filter { seeds[$0].caffemodel!.count >= 16_384 }
        let rawDonors = small.map { seeds[$0].caffemodel! }
        let treeDonors = small.map { trees[$0] }
        var lastSeed = 0
        let summary = runFuzz(target: "caffemodel", seed: 0xCAFF_E000, iterations: 100_000) { rng, _ in
            lastSeed = (large.isEmpty || !rng.chance(100)) ? rng.pick(small) : rng.pick(large)
            var bytes: [UInt8]
            if rng.chance(4) {
                bytes = seeds[lastSeed].caffemodel!
                for _ in 0..<(1 + rng.int(3)) { ByteMutation.mutate(&bytes, &rng, donors: rawDonors) }
            } else {
                bytes = ProtobufMutator.serialize(ProtobufMutator.mutate(trees[lastSeed], &rng, donors: treeDonors))
                if rng.chance(8) { ByteMutation.mutate(&bytes, &rng, donors: rawDonors) }
            }
            return bytes
        } body: { input in
            let net: Caffe_NetParameter
            do {
                net = try CaffeFiles.decodeCaffemodel(Data(input), file: "weights.caffemodel")
            } catch let e as ModelError {
                guard e.message.count > 10 else { throw FuzzInvariantError("undescriptive error: \(e)") }
                return .rejected("decode")
            }
            // The caffemodel alone (its own layers), then as the weights of its prototxt.
            let alone = try exerciseModel(
                definition: net, file: "weights.caffemodel", holdsWeights: true,
                weights: nil, patchSize: nil)
            guard let definition = definitions[lastSeed] else { return alone }
            let merged = try exerciseModel(
                definition: definition, file: "deploy.prototxt", holdsWeights: false,
                weights: net, patchSize: nil)
            if case .accepted = merged { return .accepted }
            return alone
        }
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil, "some mutants should still load")
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }
}
