/// ONNX's `TensorProto.DataType` values by name, for messages ("FLOAT16", not "element type 10").
enum ONNXElementType {
    static let names: [Int32: String] = [
        0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
        8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
        15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
        20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2",
    ]

    /// "FLOAT16", or "element type 99" for a value ONNX does not define.
    static func name(_ type: Int32) -> String { names[type] ?? "element type \(type)" }

    /// Floating-point types whose values Tessera computes in float32 (a Cast to one of them
    /// changes only the precision).
    static let floatingPoint: Set<Int32> = [1, 10, 11, 16]
    /// Integer and boolean types: shapes, indices and masks.
    static let integer: Set<Int32> = [2, 3, 4, 5, 6, 7, 9, 12, 13]
}
