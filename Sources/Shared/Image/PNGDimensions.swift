extension PNGReader {
    /// Width and height from a PNG's IHDR chunk (the first 24 bytes), nil if `bytes`
    /// does not start like a PNG. Reads nothing else: for refusing an image by its
    /// size before it is written anywhere or decoded.
    package static func dimensions(of bytes: [UInt8]) -> (width: Int, height: Int)? {
        let signature: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]
        guard bytes.count >= 24, Array(bytes[0..<8]) == signature, Array(bytes[12..<16]) == Array("IHDR".utf8) else {
            return nil
        }
        func u32(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (u32(16), u32(20))
    }
}
