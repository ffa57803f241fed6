import Foundation
import TesseraCore

/// Shape arithmetic, evaluated while importing (user audit F4): PyTorch's
/// `x.view(x.size(0), -1)` exports Shape → Gather → Unsqueeze → Concat → Reshape, which
/// constant folding cannot remove while the batch is dynamic. Tessera classifies one patch
/// at a time, so the shape of an activation is known: batch 1 and its C×H×W at patch size.
/// Shape, Gather, Slice, Unsqueeze, Squeeze, Concat, Cast and Add/Sub/Mul/Div of such
/// values (and of other constants) give constants here, which the Reshape then reads.
/// A value that depends on the activations' numbers (a Gather or an integer Cast of them)
/// is refused, naming the node.
extension ONNXImporter {
    /// Most values a computed constant may hold: shapes and axes are short; this is not a
    /// way to compute weights.
    static let maxComputedValues = ONNXConstant.maxIntegerElements

    /// Records `c` as the node's first output.
    mutating func setConstant(_ n: NodeContext, _ c: ONNXConstant) throws {
        guard let out = n.node.output.first, !out.isEmpty else { throw n.fail(.invalid, "the node has no output") }
        try requireNew(n, out)
        guard c.count <= Self.maxComputedValues else {
            throw n.fail(
                .unsupported,
                "it computes a constant of shape \(c.shapeText) (\(c.count) values); Tessera evaluates shape "
                    + "arithmetic of at most \(Self.maxComputedValues) values: constant-fold the model first "
                    + "(onnxsim)")
        }
        constants[out] = c
    }

    /// Input `i` as a constant, refusing activations with what the node would need to know.
    func knownConstant(_ n: NodeContext, _ i: Int, _ what: String) throws -> ONNXConstant {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else {
            throw n.fail(.invalid, "input \(i + 1) is missing")
        }
        if isConstant(n.node.input[i]) { return try constant(n, i) }
        _ = try activation(n, i)
        throw n.fail(
            .unsupported,
            "\(what) of the activations' values: Tessera evaluates shape arithmetic only on shapes and constants, "
                + "and has no layer that computes it")
    }

    /// An axis in `0..<rank` from ONNX's `-rank..<rank`.
    func axis(_ n: NodeContext, _ a: Int, rank: Int) throws -> Int {
        guard a >= -rank, a < rank else { throw n.fail(.invalid, "axis \(a) is outside a tensor of rank \(rank)") }
        return a < 0 ? a + rank : a
    }

    /// The axes of a node: the `axes` attribute before `inputFrom`, input `index` from it on.
    func axes(_ n: NodeContext, inputFrom: Int, index: Int) throws -> [Int]? {
        if opset < inputFrom { return n.ints("axes") }
        guard let c = try optionalConstant(n, index) else { return nil }
        guard let v = c.ints else { throw n.fail(.invalid, "its axes '\(n.node.input[index])' are not integers") }
        return v.map { Int(clamping: $0) }
    }

    /// `data.selecting(perAxis)`, refused when it would hold more than a shape's values.
    func selecting(_ n: NodeContext, _ data: ONNXConstant, _ perAxis: [[Int]]) throws -> ONNXConstant {
        var count = 1
        for picked in perAxis {
            let (m, overflow) = count.multipliedReportingOverflow(by: picked.count)
            count = overflow ? Int.max : m
        }
        guard count <= Self.maxComputedValues else {
            throw n.fail(
                .unsupported,
                "\(n.node.opType) of a constant of shape \(data.shapeText): Tessera evaluates shape arithmetic of at "
                    + "most \(Self.maxComputedValues) values; constant-fold the model first (onnxsim)")
        }
        return data.selecting(perAxis)
    }

    // MARK: - Operators

    mutating func addShape(_ n: inout NodeContext) throws {
        let raw = n.node.input.first ?? ""
        var dims: [Int]
        if isConstant(raw) {
            dims = try constant(n, 0).dims
        } else {
            let s = shapes[try activation(n, 0)]!
            dims = flat.contains(raw) ? [1, s.count] : [1, s.c, s.h, s.w]
            noteShapeEvaluation(n)
        }
        // Opset 15: start and end, clamped as Python slices are.
        let r = dims.count
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
        let start = clamp(n.int("start") ?? 0), end = clamp(n.int("end") ?? r)
        dims = start < end ? Array(dims[start..<end]) : []
        try setConstant(n, .integers(dims.map(Int64.init), dims: [dims.count]))
    }

    mutating func noteShapeEvaluation(_ n: NodeContext) {
        guard !notedShapes else { return }
        notedShapes = true
        notes.append(
            "\(file): node '\(n.name)' (Shape) and the shape arithmetic after it are evaluated while importing, "
                + "for one patch (batch 1, activations at patch size)")
    }

    mutating func addGather(_ n: inout NodeContext) throws {
        let data = try knownConstant(n, 0, "Gather")
        let indices = try knownConstant(n, 1, "Gather by indices computed from")
        guard let picked = indices.ints else {
            throw n.fail(.invalid, "its indices '\(n.node.input[1])' are not integers")
        }
        guard !data.dims.isEmpty else { throw n.fail(.invalid, "Gather from a scalar") }
        let a = try axis(n, n.int("axis") ?? 0, rank: data.dims.count)
        let size = data.dims[a]
        let chosen = try picked.map { i -> Int in
            guard i >= -Int64(size), i < Int64(size) else {
                throw n.fail(.invalid, "index \(i) is outside axis \(a) of size \(size)")
            }
            return Int(i < 0 ? i + Int64(size) : i)
        }
        var perAxis = data.dims.map { Array(0..<$0) }
        perAxis[a] = chosen
        var c = try selecting(n, data, perAxis)
        c.dims = Array(data.dims[..<a]) + indices.dims + Array(data.dims[(a + 1)...])
        try setConstant(n, c)
    }

    mutating func addSlice(_ n: inout NodeContext) throws {
        let data = try knownConstant(n, 0, "Slice")
        var starts: [Int64], ends: [Int64], axes: [Int64]?, steps: [Int64]?
        if opset < 10 {
            starts = (n.ints("starts") ?? []).map(Int64.init)
            ends = (n.ints("ends") ?? []).map(Int64.init)
            axes = n.ints("axes").map { $0.map(Int64.init) }
        } else {
            func ints(_ i: Int, _ what: String) throws -> [Int64]? {
                guard let c = try optionalConstant(n, i) else { return nil }
                guard let v = c.ints else { throw n.fail(.invalid, "its \(what) are not integers") }
                return v
            }
            starts = try ints(1, "starts") ?? []
            ends = try ints(2, "ends") ?? []
            axes = try ints(3, "axes")
            steps = try ints(4, "steps")
        }
        let rank = data.dims.count
        let ax = try (axes ?? (0..<Int64(starts.count)).map { $0 }).map { try axis(n, Int(clamping: $0), rank: rank) }
        let st = steps ?? [Int64](repeating: 1, count: starts.count)
        guard starts.count == ends.count, ax.count == starts.count, st.count == starts.count else {
            throw n.fail(.invalid, "starts, ends, axes and steps have different lengths")
        }
        var perAxis = data.dims.map { Array(0..<$0) }
        for (k, a) in ax.enumerated() {
            let d = Int64(data.dims[a]), step = st[k]
            guard step != 0 else { throw n.fail(.invalid, "a step of 0") }
            func norm(_ v: Int64) -> Int64 { v < 0 ? v &+ d : v }
            var picked: [Int] = []
            if step > 0 {
                var i = min(max(norm(starts[k]), 0), d)
                let end = min(max(norm(ends[k]), 0), d)
                while i < end {
                    picked.append(Int(i))
                    i += step
                }
            } else {
                var i = min(max(norm(starts[k]), 0), d - 1)
                let end = min(max(norm(ends[k]), -1), d - 1)
                while i > end {
                    picked.append(Int(i))
                    i += step
                }
            }
            perAxis[a] = picked
        }
        try setConstant(n, try selecting(n, data, perAxis))
    }

    /// Unsqueeze and Squeeze of a constant (their axes: an attribute before opset 13, an input from it).
    mutating func addConstantSqueeze(_ n: inout NodeContext) throws {
        let data = try constant(n, 0)
        let given = try axes(n, inputFrom: 13, index: 1)
        var c = data
        if n.node.opType == "Unsqueeze" {
            guard let given, !given.isEmpty else { throw n.fail(.invalid, "Unsqueeze without axes") }
            let rank = data.dims.count + given.count
            let inserted = Set(try given.map { try axis(n, $0, rank: rank) })
            var rest = data.dims.makeIterator()
            c.dims = (0..<rank).map { inserted.contains($0) ? 1 : rest.next() ?? 1 }
        } else {
            let rank = data.dims.count
            let removed = try given.map { Set(try $0.map { try axis(n, $0, rank: rank) }) }
            if let removed, let a = removed.first(where: { data.dims[$0] != 1 }) {
                throw n.fail(.invalid, "it squeezes axis \(a) of size \(data.dims[a]) (shape \(data.shapeText))")
            }
            c.dims = data.dims.indices.filter { a in removed.map { !$0.contains(a) } ?? (data.dims[a] != 1) }
                .map { data.dims[$0] }
        }
        try setConstant(n, c)
    }

    /// Concat of constants (the pieces of a Reshape's target).
    mutating func addConstantConcat(_ n: inout NodeContext) throws {
        let parts = try n.node.input.indices.map { try constant(n, $0) }
        guard let first = parts.first, !first.dims.isEmpty else {
            throw n.fail(.invalid, "Concat of scalars or of nothing")
        }
        let rank = first.dims.count
        guard let given = n.int("axis") else { throw n.fail(.invalid, "Concat without 'axis'") }
        let a = try axis(n, given, rank: rank)
        for p in parts
        where p.dims.count != rank || (0..<rank).contains(where: { $0 != a && p.dims[$0] != first.dims[$0] }) {
            throw n.fail(.invalid, "Concat of constants of shapes \(parts.map(\.shapeText).joined(separator: ", "))")
        }
        let outer = first.dims[..<a].reduce(1, *), inner = first.dims[(a + 1)...].reduce(1, *)
        let integers = parts.allSatisfy { $0.ints != nil }
        var c = ONNXConstant(dims: first.dims, floats: [], ints: integers ? [] : nil)
        c.dims[a] = parts.reduce(0) { $0 + $1.dims[a] }
        guard c.dims.reduce(1, *) <= Self.maxComputedValues else {
            throw n.fail(.unsupported, "Concat of constants to shape \(c.shapeText): constant-fold the model first")
        }
        for o in 0..<outer {
            for p in parts {
                let chunk = p.dims[a] * inner
                c.floats += p.floats[(o * chunk)..<((o + 1) * chunk)]
                if integers { c.ints! += p.ints![(o * chunk)..<((o + 1) * chunk)] }
            }
        }
        try setConstant(n, c)
    }

    /// Add, Sub, Mul or Div of two constants, with NumPy broadcasting; integers stay integers
    /// (Div truncates, as onnxruntime's does).
    mutating func addConstantArithmetic(_ n: inout NodeContext) throws {
        let a = try constant(n, 0), b = try constant(n, 1)
        let rank = max(a.dims.count, b.dims.count)
        let da = [Int](repeating: 1, count: rank - a.dims.count) + a.dims
        let db = [Int](repeating: 1, count: rank - b.dims.count) + b.dims
        var dims: [Int] = []
        for (x, y) in zip(da, db) {
            guard x == y || x == 1 || y == 1 else {
                throw n.fail(.invalid, "constants of shapes \(a.shapeText) and \(b.shapeText) do not broadcast")
            }
            dims.append(x == 1 ? y : x)
        }
        let count = dims.reduce(1) { $0 * $1 }
        guard count <= Self.maxComputedValues else {
            throw n.fail(.unsupported, "\(n.node.opType) of constants to shape \(dims): constant-fold the model first")
        }
        // Each output index's source in a and in b (a broadcast axis stays at 0).
        func source(_ d: [Int], _ flat: Int) -> Int {
            var rem = flat, index = 0, step = 1
            var s = [Int](repeating: 0, count: rank)
            for k in stride(from: rank - 1, through: 0, by: -1) {
                s[k] = rem % dims[k]
                rem /= dims[k]
            }
            for k in stride(from: rank - 1, through: 0, by: -1) {
                index += (d[k] == 1 ? 0 : s[k]) * step
                step *= d[k]
            }
            return index
        }
        let op = n.node.opType
        var c = ONNXConstant(dims: dims, floats: [])
        if let ia = a.ints, let ib = b.ints {
            var out: [Int64] = []
            for i in 0..<count {
                let x = ia[source(da, i)], y = ib[source(db, i)]
                switch op {
                case "Add": out.append(x &+ y)
                case "Sub": out.append(x &- y)
                case "Mul": out.append(x &* y)
                default:
                    guard y != 0 else { throw n.fail(.invalid, "an integer division by zero") }
                    out.append(x == .min && y == -1 ? .min : x / y)
                }
            }
            c.ints = out
            c.floats = out.map { Float($0) }
        } else {
            c.floats = (0..<count).map { i in
                let x = a.floats[source(da, i)], y = b.floats[source(db, i)]
                switch op {
                case "Add": return x + y
                case "Sub": return x - y
                case "Mul": return x * y
                default: return x / y
                }
            }
        }
        try setConstant(n, c)
    }
}

extension ONNXConstant {
    static func integers(_ values: [Int64], dims: [Int]) -> ONNXConstant {
        ONNXConstant(dims: dims, floats: values.map { Float($0) }, ints: values)
    }

    /// The sub-tensor of the given indices along each axis (a Gather or a Slice), row-major.
    func selecting(_ perAxis: [[Int]]) -> ONNXConstant {
        var strides = [Int](repeating: 1, count: dims.count)
        for k in stride(from: dims.count - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * dims[k + 1] }
        var offsets = [0]
        for (k, picked) in perAxis.enumerated() {
            offsets = offsets.flatMap { o in picked.map { o + $0 * strides[k] } }
        }
        return ONNXConstant(
            dims: perAxis.map(\.count), floats: offsets.map { floats[$0] },
            ints: ints.map { i in offsets.map { i[$0] } })
    }
}
