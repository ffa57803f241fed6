/// Appends little-endian fields to a header frame.
struct WireWriter {
    var bytes: [UInt8] = []

    init(type: WireMessageType, flags: UInt8 = 0) {
        bytes.reserveCapacity(64)
        bytes.append(contentsOf: WireMessage.magic)
        bytes.append(WireMessage.version)
        bytes.append(type.rawValue)
        bytes.append(flags)
    }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { append(v) }
    mutating func u32(_ v: UInt32) { append(v) }
    mutating func u64(_ v: UInt64) { append(v) }
    mutating func f32(_ v: Float) { append(v.bitPattern) }
    mutating func f64(_ v: Double) { append(v.bitPattern) }
    mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }

    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        var le = v.littleEndian
        withUnsafeBytes(of: &le) { bytes.append(contentsOf: $0) }
    }

    /// A string: UInt16 byte count, then UTF-8 (callers keep strings under the limit;
    /// longer ones are cut at a character boundary so the frame stays decodable).
    mutating func string(_ s: String) {
        var utf8 = Array(s.utf8)
        if utf8.count > Int(UInt16.max) {
            utf8 = Array(String(decoding: utf8.prefix(Int(UInt16.max)), as: UTF8.self).utf8.prefix(Int(UInt16.max)))
        }
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Floats with a UInt16 count.
    mutating func floats(_ values: [Float]) {
        u16(UInt16(clamping: values.count))
        for v in values.prefix(Int(UInt16.max)) { f32(v) }
    }
}

/// Reads little-endian fields from a header frame; every read is bounds-checked.
struct WireReader {
    let bytes: [UInt8]
    var offset: Int
    let limits: WireLimits
    let what: String

    init(_ bytes: [UInt8], offset: Int, limits: WireLimits, what: String) {
        self.bytes = bytes
        self.offset = offset
        self.limits = limits
        self.what = what
    }

    func error(_ kind: WireError.Kind, _ reason: String) -> WireError {
        WireError(kind, "\(what): \(reason)")
    }

    private mutating func take(_ count: Int, _ field: String) throws -> ArraySlice<UInt8> {
        guard count >= 0, bytes.count - offset >= count else {
            throw error(.truncated, "header ends before \(field) (\(bytes.count) bytes)")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    private mutating func integer<T: FixedWidthInteger>(_ field: String, _: T.Type) throws -> T {
        let slice = try take(MemoryLayout<T>.size, field)
        var value: T = 0
        for (i, byte) in slice.enumerated() { value |= T(byte) << (8 * i) }
        return value
    }

    mutating func u8(_ field: String) throws -> UInt8 { try integer(field, UInt8.self) }
    mutating func u16(_ field: String) throws -> UInt16 { try integer(field, UInt16.self) }
    mutating func u32(_ field: String) throws -> UInt32 { try integer(field, UInt32.self) }
    mutating func u64(_ field: String) throws -> UInt64 { try integer(field, UInt64.self) }
    mutating func raw(_ count: Int, _ field: String) throws -> [UInt8] { Array(try take(count, field)) }

    /// A finite float.
    mutating func f32(_ field: String) throws -> Float {
        let v = Float(bitPattern: try u32(field))
        guard v.isFinite else { throw error(.invalidValue, "\(field) is \(v)") }
        return v
    }

    /// A finite, non-negative double.
    mutating func nonNegativeF64(_ field: String) throws -> Double {
        let v = Double(bitPattern: try u64(field))
        guard v.isFinite, v >= 0 else { throw error(.invalidValue, "\(field) is \(v)") }
        return v
    }

    /// A UInt32 in `range`.
    mutating func u32(_ field: String, in range: ClosedRange<Int>) throws -> UInt32 {
        let v = try u32(field)
        guard range.contains(Int(v)) else {
            throw error(
                range.lowerBound > Int(v) ? .invalidValue : .limitExceeded,
                "\(field) \(v) outside \(range.lowerBound)…\(range.upperBound)")
        }
        return v
    }

    /// A length-prefixed UTF-8 string without NUL, at most `limits.maxStringBytes`.
    mutating func string(_ field: String) throws -> String {
        let count = Int(try u16(field + " length"))
        guard count <= limits.maxStringBytes else {
            throw error(.limitExceeded, "\(field) is \(count) bytes, limit \(limits.maxStringBytes)")
        }
        let utf8 = try take(count, field)
        guard !utf8.contains(0) else { throw error(.invalidString, "\(field) contains NUL") }
        guard let s = validUTF8(utf8) else { throw error(.invalidString, "\(field) is not UTF-8") }
        return s
    }

    /// A string that names one file: not empty, no "/", not "." or "..".
    mutating func fileName(_ field: String) throws -> String {
        let s = try string(field)
        guard !s.isEmpty, !s.contains("/"), s != ".", s != ".." else {
            throw error(.invalidString, "\(field) \"\(s)\" is not a plain file name")
        }
        return s
    }

    /// Floats with a UInt16 count (at most `maxCount`), all finite.
    mutating func floats(_ field: String, maxCount: Int) throws -> [Float] {
        let count = Int(try u16(field + " count"))
        guard count <= maxCount else { throw error(.limitExceeded, "\(count) \(field), limit \(maxCount)") }
        guard bytes.count - offset >= count * 4 else { throw error(.truncated, "header ends inside \(field)") }
        var values: [Float] = []
        values.reserveCapacity(count)
        for i in 0..<count { values.append(try f32("\(field)[\(i)]")) }
        return values
    }

    /// Checks nothing follows the last field.
    func finish() throws {
        guard offset == bytes.count else {
            throw error(.trailingBytes, "\(bytes.count - offset) bytes after the last field")
        }
    }

    /// Strict UTF-8 validation (no replacement characters).
    private func validUTF8(_ bytes: ArraySlice<UInt8>) -> String? {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var scalars = String.UnicodeScalarView()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: return String(scalars)
            case .error: return nil
            }
        }
    }
}

/// Overflow-checked products and sums for declared sizes.
enum Checked {
    /// `a × b × …`, or nil on overflow.
    static func product(_ values: Int...) -> Int? {
        var result = 1
        for v in values {
            guard v >= 0 else { return nil }
            let (r, o) = result.multipliedReportingOverflow(by: v)
            if o { return nil }
            result = r
        }
        return result
    }
}
