import TesseraCore

/// How a map's probabilities are stored. Integer types hold p × 255 or
/// p × 65535, clamped to [0, 1] first and rounded to nearest (halves away from
/// zero), NaN → 0: the same rule as Tessera's PNG writers, so a PNG exported
/// from a uint8 store equals one written from the floats.
package enum MapDType: String, Sendable, Codable, CaseIterable {
    case float32, float16, uint8, uint16

    /// Bytes per sample.
    package var size: Int {
        switch self {
        case .float32: 4
        case .float16, .uint16: 2
        case .uint8: 1
        }
    }

    /// The Zarr v2 (NumPy) dtype string.
    var zarrDType: String {
        switch self {
        case .float32: "<f4"
        case .float16: "<f2"
        case .uint8: "|u1"
        case .uint16: "<u2"
        }
    }

    /// What never-written tiles read as: NaN for floats ("not computed", which
    /// viewers and NumPy's nan-functions skip), 0 for integers (no NaN exists, and
    /// the skipped tiles are background, where 0 is the truthful display value;
    /// `MapStore.presentTiles()` still tells them apart).
    package var fillValue: Float { isFloat ? .nan : 0 }

    var isFloat: Bool { self == .float32 || self == .float16 }

    /// The fill value's JSON in a `.zarray`.
    var zarrFillValue: String { isFloat ? "\"NaN\"" : "0" }

    /// The little-endian bytes of `values`, quantised for this type. Pure: a
    /// worker can call it on the tile it computed without any store.
    package func encode(values: UnsafeBufferPointer<Float>) -> [UInt8] {
        guard !values.isEmpty else { return [] }
        return [UInt8](unsafeUninitializedCapacity: values.count * size) { bytes, initialized in
            encode(values, into: UnsafeMutableRawPointer(bytes.baseAddress!))
            initialized = values.count * size
        }
    }

    /// Encodes `values` into `destination` (at least `values.count × size` bytes, any alignment).
    func encode(_ values: UnsafeBufferPointer<Float>, into destination: UnsafeMutableRawPointer) {
        let n = values.count
        switch self {
        case .float32:
            if 1.littleEndian == 1 {
                if n > 0 { destination.copyMemory(from: values.baseAddress!, byteCount: n * 4) }
            } else {
                for i in 0..<n {
                    destination.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                }
            }
        case .float16:
            for i in 0..<n {
                destination.storeBytes(of: halfBits(values[i]).littleEndian, toByteOffset: i * 2, as: UInt16.self)
            }
        case .uint8:
            let out = destination.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { out[i] = UInt8(quantize(values[i], 255)) }
        case .uint16:
            for i in 0..<n {
                destination.storeBytes(
                    of: UInt16(quantize(values[i], 65535)).littleEndian, toByteOffset: i * 2,
                    as: UInt16.self)
            }
        }
    }

    /// Decodes `count` samples from `source` into `values` as probabilities
    /// (integers divided by 255 or 65535, which the quantiser maps back to the same integer).
    func decode(_ source: UnsafeRawPointer, count: Int, into values: UnsafeMutablePointer<Float>) {
        switch self {
        case .float32:
            for i in 0..<count {
                values[i] = Float(
                    bitPattern: UInt32(
                        littleEndian: source.loadUnaligned(
                            fromByteOffset: i * 4,
                            as: UInt32.self)))
            }
        case .float16:
            for i in 0..<count {
                values[i] = halfValue(
                    UInt16(
                        littleEndian: source.loadUnaligned(
                            fromByteOffset: i * 2,
                            as: UInt16.self)))
            }
        case .uint8:
            let bytes = source.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { values[i] = Float(bytes[i]) / 255 }
        case .uint16:
            for i in 0..<count {
                let q = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                values[i] = Float(q) / 65535
            }
        }
    }

    /// How a sample reads as a probability, for the maps' metadata.
    var valuesRule: String {
        switch self {
        case .uint8: "probability * 255, rounded"
        case .uint16: "probability * 65535, rounded"
        case .float16, .float32: "probability"
        }
    }

    /// One sample of the fill value, encoded (little-endian).
    var fillBytes: [UInt8] {
        [fillValue].withUnsafeBufferPointer { encode(values: $0) }
    }
}

/// Probability → integer sample: clamped to [0, 1] then rounded to 0…`scale`; NaN → 0.
@inline(__always) func quantize(_ p: Float, _ scale: Float) -> Float {
    p > 0 ? (min(p, 1) * scale).rounded() : 0
}

/// IEEE half bits of `value`, rounded to nearest even (as NumPy's astype(float16)).
@inline(__always) func halfBits(_ value: Float) -> UInt16 {
    Float16(value).bitPattern
}

@inline(__always) func halfValue(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}
