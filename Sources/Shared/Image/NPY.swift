import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// NumPy's `.npy` format for float32 arrays: version 1.0 written (magic
/// `\x93NUMPY`, 1, 0, a little-endian u16 header length, a Python dict literal
/// padded with spaces and ended by `\n` so that data starts at a multiple of
/// 64 bytes, then the raw little-endian float32 values in C order); versions
/// 1.0–3.0 read.
package enum NPY {
    /// A float32 array read from a `.npy` file.
    package struct FloatArray: Sendable, Equatable {
        package let shape: [Int]
        package let data: [Float]
    }

    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// The complete header (magic … `\n`) for a `<f4` C-order array of `shape`.
    static func header(shape: [Int]) -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = magic.count + 2 + 2 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = UInt16(dict.utf8.count)
        return magic + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(dict.utf8)
    }

    /// Writes `map` as a `(C, H, W)` float32 array, atomically.
    package static func write(_ map: ProbabilityMap, to path: String) throws {
        try map.data.withUnsafeBufferPointer { values in
            try write(shape: [map.classes, map.height, map.width], values: values, to: path)
        }
    }

    /// Writes a map read band by band (a chunked store: the whole map is never in
    /// memory) as a `(C, H, W)` float32 array, atomically: each band's class planes
    /// go to their places in the file.
    package static func write(_ map: some MapRowSource, to path: String) throws {
        if let inMemory = map as? ProbabilityMap { return try write(inMemory, to: path) }
        let (classes, height, width) = (map.classes, map.height, map.width)
        let head = header(shape: [classes, height, width])
        try AtomicFile.write(to: path) { temporary in
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw ImageIOError(.cannotOpen, path: path, detail: errnoText()) }
            var closed = false
            defer { if !closed { close(fd) } }
            func put(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
                var done = 0
                while done < bytes.count {
                    let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                    guard n > 0 else { throw ImageIOError(.io, path: path, detail: "write failed: \(errnoText())") }
                    done += n
                }
            }
            try head.withUnsafeBytes { try put($0, at: 0) }
            if let store = map as? MapStore, let view = try? NPYStoreView(store) {
                try write(view, into: fd, header: head.count, path: path)
            } else {
                try writeBands()
            }
            func writeBands() throws {
                for band in bands(map) {
                    var values = try map.rows(band)
                    if 1.littleEndian != 1 {
                        for i in values.indices { values[i] = Float(bitPattern: values[i].bitPattern.littleEndian) }
                    }
                    try values.withUnsafeBytes { all in
                        let plane = band.count * width * 4
                        for c in 0..<classes {
                            try put(
                                UnsafeRawBufferPointer(rebasing: all[(c * plane)..<((c + 1) * plane)]),
                                at: head.count + ((c * height + band.lowerBound) * width) * 4)
                        }
                    }
                }
            }
            closed = true
            let synced = fsync(fd) == 0
            let code = errno
            guard close(fd) == 0, synced else {
                throw ImageIOError(.io, path: path, detail: "cannot complete the file: \(errnoText(code))")
            }
        }
    }

    /// Writes `values` (C order) as an array of `shape`, atomically.
    package static func write(shape: [Int], values: UnsafeBufferPointer<Float>, to path: String) throws {
        guard shape.reduce(1, *) == values.count, shape.allSatisfy({ $0 >= 0 }) else {
            throw ImageIOError(
                .invalidArgument, path: path, detail: "shape \(shape) does not hold \(values.count) values")
        }
        try AtomicFile.write(to: path) { temporary in
            guard let file = fopen(temporary, "wb") else {
                throw ImageIOError(.cannotOpen, path: path, detail: errnoText())
            }
            var closed = false
            defer { if !closed { fclose(file) } }
            func put(_ pointer: UnsafeRawPointer?, _ count: Int) throws {
                guard count == 0 || fwrite(pointer, 1, count, file) == count else {
                    throw ImageIOError(.io, path: path, detail: "write failed: \(errnoText())")
                }
            }
            let head = header(shape: shape)
            try head.withUnsafeBytes { try put($0.baseAddress, $0.count) }
            if 1.littleEndian == 1 {
                try put(UnsafeRawPointer(values.baseAddress), values.count * 4)
            } else {
                // Big-endian host: swap a chunk at a time.
                var chunk = [UInt32](repeating: 0, count: 1 << 16)
                var start = 0
                while start < values.count {
                    let n = min(chunk.count, values.count - start)
                    for i in 0..<n { chunk[i] = values[start + i].bitPattern.littleEndian }
                    try chunk.withUnsafeBytes { try put($0.baseAddress, n * 4) }
                    start += n
                }
            }
            closed = true
            let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
            let code = errno
            guard fclose(file) == 0, flushed else {
                throw ImageIOError(.io, path: path, detail: "cannot complete the file: \(errnoText(code))")
            }
        }
    }

    /// Reads a float32 (`<f4`, C order) array. The data size implied by the
    /// header is checked against the file's size before anything is allocated.
    package static func read(path: String) throws -> FloatArray {
        guard let file = fopen(path, "rb") else { throw ImageIOError(.cannotOpen, path: path, detail: errnoText()) }
        defer { fclose(file) }
        func bytes(_ count: Int) throws -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: count)
            guard fread(&buffer, 1, count, file) == count else {
                throw ImageIOError(.truncated, path: path, detail: "the file ends inside the .npy header")
            }
            return buffer
        }
        let prefix = try bytes(8)
        guard Array(prefix[0..<6]) == magic else {
            throw ImageIOError(.notNPY, path: path, detail: "no \\x93NUMPY magic")
        }
        let major = prefix[6]
        let headerLength: Int
        switch major {
        case 1:
            let b = try bytes(2)
            headerLength = Int(b[0]) | Int(b[1]) << 8
        case 2, 3:
            let b = try bytes(4)
            headerLength = Int(b[0]) | Int(b[1]) << 8 | Int(b[2]) << 16 | Int(b[3]) << 24
        default:
            throw ImageIOError(.unsupportedNPY, path: path, detail: "format version \(major).\(prefix[7])")
        }
        guard headerLength <= 1 << 20 else {
            throw ImageIOError(.unsupportedNPY, path: path, detail: "header of \(headerLength) bytes")
        }
        let dict = String(decoding: try bytes(headerLength), as: UTF8.self)
        let shape = try parseHeader(dict, path: path)
        var count = 1
        for dim in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= Int.max / 4 else {
                throw ImageIOError(.unsupportedNPY, path: path, detail: "shape \(shape) is too large")
            }
            count = product
        }
        let dataStart = ftello(file)
        guard fseeko(file, 0, SEEK_END) == 0 else { throw ImageIOError(.io, path: path, detail: errnoText()) }
        let available = Int(ftello(file) - dataStart)
        guard available == count * 4 else {
            throw ImageIOError(
                available < count * 4 ? .truncated : .unsupportedNPY, path: path,
                detail: "shape \(shape) needs \(count * 4) bytes of data, the file has \(available)")
        }
        guard fseeko(file, dataStart, SEEK_SET) == 0 else { throw ImageIOError(.io, path: path, detail: errnoText()) }
        let data = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            guard count == 0 || fread(buffer.baseAddress, 4, count, file) == count else {
                throw ImageIOError(.truncated, path: path, detail: "short read of the array data")
            }
            if 1.littleEndian != 1 {
                for i in 0..<count { buffer[i] = Float(bitPattern: UInt32(littleEndian: buffer[i].bitPattern)) }
            }
            initialized = count
        }
        return FloatArray(shape: shape, data: data)
    }

    /// Checks descr and fortran_order, returns the shape.
    static func parseHeader(_ dict: String, path: String) throws -> [Int] {
        func value(of key: String) -> Substring? {
            guard let range = dict.range(of: "'\(key)':") else { return nil }
            return dict[range.upperBound...].drop { $0 == " " }
        }
        guard let descr = value(of: "descr") else {
            throw ImageIOError(.notNPY, path: path, detail: "no 'descr' in the header \(dict.printable(limit: 200))")
        }
        guard descr.hasPrefix("'<f4'") else {
            throw ImageIOError(
                .unsupportedNPY, path: path,
                detail: "dtype \(String(descr.prefix { $0 != "," }).printable(limit: 40)), only '<f4' is read")
        }
        guard let order = value(of: "fortran_order") else {
            throw ImageIOError(
                .notNPY, path: path, detail: "no 'fortran_order' in the header \(dict.printable(limit: 200))")
        }
        guard order.hasPrefix("False") else {
            throw ImageIOError(
                .unsupportedNPY, path: path, detail: "only C-order (fortran_order False) arrays are read")
        }
        guard let shapeText = value(of: "shape"), shapeText.first == "(", let close = shapeText.firstIndex(of: ")")
        else {
            throw ImageIOError(
                .notNPY, path: path, detail: "no 'shape' tuple in the header \(dict.printable(limit: 200))")
        }
        let inner = shapeText[shapeText.index(after: shapeText.startIndex)..<close]
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let trimmed = part.trimmingSpaces()
            if trimmed.isEmpty { continue }
            guard let dim = Int(trimmed), dim >= 0 else {
                throw ImageIOError(
                    .notNPY, path: path, detail: "bad dimension '\(String(trimmed).printable(limit: 40))' in the shape")
            }
            shape.append(dim)
        }
        return shape
    }
}

extension ProbabilityMap {
    /// Reads a `(C, H, W)` float32 `.npy` file as written by `NPY.write`.
    package init(npyPath path: String) throws {
        let array = try NPY.read(path: path)
        guard array.shape.count == 3 else {
            throw ImageIOError(.unsupportedNPY, path: path, detail: "shape \(array.shape) is not (C, H, W)")
        }
        self.init(classes: array.shape[0], height: array.shape[1], width: array.shape[2], data: array.data)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        guard let first = firstIndex(where: { $0 != " " }), let last = lastIndex(where: { $0 != " " }) else {
            return ""
        }
        return self[first...last]
    }
}
