import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

@Suite("NumPy .npy files")
struct ImageNPYTests {
    func randomMap(classes: Int, height: Int, width: Int) -> ProbabilityMap {
        var random = SeededGenerator(seed: 7)
        return ProbabilityMap(
            classes: classes, height: height, width: width,
            data: (0..<(classes * height * width)).map { _ in Float.random(in: -1...1, using: &random) })
    }

    @Test(
        "header: v1.0, the dict NumPy writes, data 64-byte aligned",
        arguments: [[2, 3, 4], [5], [1, 1000, 17], [0, 3]])
    func header(shape: [Int]) throws {
        let header = NPY.header(shape: shape)
        #expect(Array(header.prefix(8)) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        #expect(header.count % 64 == 0, "header is \(header.count) bytes")
        #expect(header.last == UInt8(ascii: "\n"))
        #expect(Int(header[8]) | Int(header[9]) << 8 == header.count - 10)
        let dict = String(decoding: header[10...], as: UTF8.self)
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        #expect(dict.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': \(dims), }"), "\(dict)")
        #expect(try NPY.parseHeader(dict, path: "x") == shape)
    }

    @Test("write then read gives the same map, bit for bit")
    func roundTrip() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let map = randomMap(classes: 3, height: 9, width: 11)
        let path = directory.file("map.npy")
        try NPY.write(map, to: path)
        let back = try ProbabilityMap(npyPath: path)
        #expect(back.data.map(\.bitPattern) == map.data.map(\.bitPattern))
        #expect(back.classes == 3 && back.height == 9 && back.width == 11)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        #expect(size == NPY.header(shape: [3, 9, 11]).count + 3 * 9 * 11 * 4)
    }

    @Test("bad and truncated .npy files are refused, naming the file")
    func badFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("bad.npy")
        try NPY.write(randomMap(classes: 2, height: 4, width: 4), to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 4).write(to: URL(fileURLWithPath: path))
        #expect { try NPY.read(path: path) } throws: { ($0 as? ImageIOError)?.kind == .truncated }
        try Data("not numpy at all".utf8).write(to: URL(fileURLWithPath: path))
        #expect { try NPY.read(path: path) } throws: { ($0 as? ImageIOError)?.kind == .notNPY }
        var f8 = Array(bytes)
        let descr = Array("'<f4'".utf8)
        if let at = (0..<(f8.count - descr.count)).first(where: { Array(f8[$0..<($0 + descr.count)]) == descr }) {
            f8[at + 3] = UInt8(ascii: "8")
        }
        try Data(f8).write(to: URL(fileURLWithPath: path))
        #expect { try NPY.read(path: path) } throws: {
            ($0 as? ImageIOError)?.kind == .unsupportedNPY && "\($0)".contains(path)
        }
    }

    @Test("numpy.load reads the shape and the values")
    func numpyLoads() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import numpy"]
        probe.standardError = FileHandle.nullDevice
        do {
            try probe.run()
            probe.waitUntilExit()
        } catch {}
        guard probe.terminationReason == .exit, probe.terminationStatus == 0 else {
            print("SKIPPED numpy.load check: `python3 -c 'import numpy'` does not work here")
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let map = randomMap(classes: 2, height: 5, width: 6)
        let npy = directory.file("map.npy")
        let raw = directory.file("map.raw")
        try NPY.write(map, to: npy)
        try map.data.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: raw)) }
        let script = """
            import sys, numpy as np
            a = np.load(sys.argv[1])
            b = np.fromfile(sys.argv[2], dtype='<f4').reshape(2, 5, 6)
            assert a.dtype == np.float32, a.dtype
            assert a.shape == (2, 5, 6), a.shape
            assert a.flags['C_CONTIGUOUS']
            assert np.array_equal(a, b)
            assert a[1, 4, 5] == b[1, 4, 5]
            print('ok', a.shape)
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, npy, raw]
        let output = Pipe()
        python.standardOutput = output
        python.standardError = output
        try python.run()
        python.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(python.terminationStatus == 0, "python said: \(text)")
        #expect(text.contains("ok (2, 5, 6)"))
    }
}
