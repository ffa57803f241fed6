import Foundation

/// A constant tensor of an ONNX graph (an initializer or a Constant node's value),
/// decoded to floats or integers with its shape checked against its values.
struct ONNXConstant {
    var dims: [Int]
    var floats: [Float]
    /// The exact values of an integer tensor (shapes, axes); nil for floating-point ones.
    var ints: [Int64]?
    var count: Int { floats.count }
    var shapeText: String { dims.isEmpty ? "scalar" : dims.map(String.init).joined(separator: "×") }

    /// The dimensions with leading 1s removed (how a broadcast constant is compared).
    var trimmed: [Int] { Array(dims.drop(while: { $0 == 1 })) }

    /// Largest tensor Tessera reads (elements), as for Caffe blobs.
    static let maxElements = 1 << 31

    /// Largest integer tensor read (shapes, axes): decoded, an int8 value takes 12
    /// bytes (as Int64 and as Float), so a large one would multiply the model's size.
    static let maxIntegerElements = 1 << 16

    /// ONNX's `TensorProto.DataType` values Tessera reads.
    enum DataType: Int32 {
        case float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7, float16 = 10, double = 11, bfloat16 = 16

        var name: String {
            switch self {
            case .float: return "float32"
            case .uint8: return "uint8"
            case .int8: return "int8"
            case .int32: return "int32"
            case .int64: return "int64"
            case .float16: return "float16"
            case .double: return "float64"
            case .bfloat16: return "bfloat16"
            }
        }
        var isInteger: Bool { [.uint8, .int8, .int32, .int64].contains(self) }
        var byteSize: Int {
            switch self {
            case .uint8, .int8: return 1
            case .float16, .bfloat16: return 2
            case .float, .int32: return 4
            case .int64, .double: return 8
            }
        }
    }

    /// Decodes `t`; `what` names it in errors ("initializer 'conv1.weight'").
    init(_ t: Onnx_TensorProto, what: String, file: String) throws {
        func fail(_ m: String) -> ModelError { ModelError(.weights, file: file, "\(what): \(m)") }
        guard t.dataLocation != .external else {
            throw fail(
                "its values are in an external-data file, which was not read: "
                    + "load the model from its file, next to its external data")
        }
        guard let type = DataType(rawValue: t.dataType) else {
            throw fail(
                "data type \(ONNXElementType.name(t.dataType)) is not one Tessera reads (FLOAT, FLOAT16, "
                    + "BFLOAT16, DOUBLE, INT64, INT32, INT8, UINT8)")
        }
        guard t.dims.count <= 16 else { throw fail("has \(t.dims.count) dimensions") }
        var count = 1
        for d in t.dims {
            guard d >= 0 else {
                throw fail("has a negative dimension (\(t.dims.map(String.init).joined(separator: "×")))")
            }
            let (p, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, p <= Self.maxElements else {
                throw fail("its shape \(t.dims.map(String.init).joined(separator: "×")) has more than 2^31 elements")
            }
            count = p
        }
        dims = t.dims.map { Int($0) }
        let shape = dims.isEmpty ? "scalar" : dims.map(String.init).joined(separator: "×")
        func mismatch(_ stored: Int, _ unit: String) -> ModelError {
            fail("its shape \(shape) holds \(count) values but it stores \(stored) \(unit)")
        }
        ints = nil
        floats = []
        if type.isInteger, count > Self.maxIntegerElements {
            throw fail(
                "\(count) \(type.name) values (shape \(shape)): Tessera reads integer tensors only "
                    + "as shapes and axes (at most \(Self.maxIntegerElements) values); weights must be floating-point")
        }
        if t.hasRawData {
            let raw = t.rawData
            guard raw.count == count * type.byteSize else {
                throw mismatch(raw.count, "bytes of raw_data (\(type.name): \(count * type.byteSize) expected)")
            }
            // Straight from the bytes, little-endian, without copying them first.
            (floats, ints) = raw.withUnsafeBytes { (b: UnsafeRawBufferPointer) -> ([Float], [Int64]?) in
                func le<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T {
                    T(littleEndian: b.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
                }
                let all = 0..<count
                switch type {
                case .float: return (all.map { Float(bitPattern: le($0, UInt32.self)) }, nil)
                case .float16: return (all.map { Self.half(le($0, UInt16.self)) }, nil)
                case .bfloat16: return (all.map { Float(bitPattern: UInt32(le($0, UInt16.self)) << 16) }, nil)
                case .double: return (all.map { Float(Double(bitPattern: le($0, UInt64.self))) }, nil)
                case .int64: return ([], all.map { le($0, Int64.self) })
                case .int32: return ([], all.map { Int64(le($0, Int32.self)) })
                case .int8: return ([], all.map { Int64(le($0, Int8.self)) })
                case .uint8: return ([], all.map { Int64(le($0, UInt8.self)) })
                }
            }
            if let i = ints { floats = i.map { Float($0) } }
        } else {
            switch type {
            case .float:
                guard t.floatData.count == count else { throw mismatch(t.floatData.count, "float_data values") }
                floats = t.floatData
            case .double:
                guard t.doubleData.count == count else { throw mismatch(t.doubleData.count, "double_data values") }
                floats = t.doubleData.map { Float($0) }
            case .float16, .bfloat16:
                guard t.int32Data.count == count else { throw mismatch(t.int32Data.count, "int32_data values") }
                floats = t.int32Data.map {
                    type == .float16
                        ? Self.half(UInt16(truncatingIfNeeded: $0))
                        : Float(bitPattern: UInt32(UInt16(truncatingIfNeeded: $0)) << 16)
                }
            case .int64:
                guard t.int64Data.count == count else { throw mismatch(t.int64Data.count, "int64_data values") }
                ints = t.int64Data
                floats = t.int64Data.map { Float($0) }
            case .int32, .int8, .uint8:
                guard t.int32Data.count == count else { throw mismatch(t.int32Data.count, "int32_data values") }
                ints = t.int32Data.map { Int64($0) }
                floats = t.int32Data.map { Float($0) }
            }
        }
    }

    init(dims: [Int], floats: [Float], ints: [Int64]? = nil) {
        self.dims = dims
        self.floats = floats
        self.ints = ints
    }

    /// IEEE 754 half precision to single (exact: every half is a float).
    static func half(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = Int((h >> 10) & 0x1F)
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {
            // Zero or subnormal: mantissa × 2^-24.
            let v = Float(mantissa) * Float(bitPattern: 0x3380_0000)
            return sign != 0 ? -v : v
        }
        return Float(bitPattern: sign | UInt32(exponent + 112) << 23 | (mantissa << 13))
    }
}
