import CLibPNG
import CZeroMQ
import Foundation
import Testing

@testable import TesseraEngine

/// One real call into each C library: these fail when a library is missing or broken.
@Suite("C library smoke tests")
struct LibrarySmokeTests {
    @Test("ZeroMQ PUSH/PULL round trip over inproc://")
    func zmqRoundTrip() throws {
        let ctx = try #require(zmq_ctx_new())
        defer { zmq_ctx_term(ctx) }
        let push = try #require(zmq_socket(ctx, ZMQ_PUSH))
        let pull = try #require(zmq_socket(ctx, ZMQ_PULL))
        var linger: CInt = 0
        zmq_setsockopt(push, ZMQ_LINGER, &linger, MemoryLayout<CInt>.size)
        zmq_setsockopt(pull, ZMQ_LINGER, &linger, MemoryLayout<CInt>.size)
        defer { zmq_close(push); zmq_close(pull) }
        #expect(zmq_bind(pull, "inproc://smoke") == 0)
        #expect(zmq_connect(push, "inproc://smoke") == 0)
        let message = Array("tessera".utf8)
        #expect(zmq_send(push, message, message.count, 0) == message.count)
        var buffer = [UInt8](repeating: 0, count: 64)
        let received = zmq_recv(pull, &buffer, buffer.count, 0)
        #expect(received == message.count)
        #expect(Array(buffer.prefix(Int(max(received, 0)))) == message)
    }

    @Test("cblas_sgemm matches a hand-computed product")
    func sgemm() throws {
        let blas = try BLAS.get()
        // [1 2 3; 4 5 6] × [7 8; 9 10; 11 12] = [58 64; 139 154]
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Float] = [7, 8, 9, 10, 11, 12]
        var c = [Float](repeating: -1, count: 4)
        c.withUnsafeMutableBufferPointer { pc in
            blas.sgemm(m: 2, n: 2, k: 3, a: a, lda: 3, b: b, ldb: 2, c: pc.baseAddress!, ldc: 2)
        }
        #expect(c == [58, 64, 139, 154], "sgemm gave \(c)")
        #expect(blas.selfTestError() < 1e-5)
        #expect(blas.coreName != "unknown", "OpenBLAS did not report its kernel")
    }

    @Test("BLAS kernel choice follows the CPU's features")
    func kernelChoice() {
        #expect(
            CPUFeatures(
                flags: ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"],
                modelName: "x"
            ).preferredOpenBLASCore == "SkylakeX")
        #expect(CPUFeatures(flags: ["avx", "avx2", "fma"], modelName: "x").preferredOpenBLASCore == "Haswell")
        #expect(CPUFeatures(flags: ["avx"], modelName: "x").preferredOpenBLASCore == "Sandybridge")
        #expect(CPUFeatures(flags: ["sse2"], modelName: "x").preferredOpenBLASCore == nil)
        let parsed = CPUFeatures(cpuinfo: "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx avx2 fma\n")
        #expect(parsed.modelName == "Test CPU")
        #expect(parsed.preferredOpenBLASCore == "Haswell")
    }

    @Test("A PNG written with libpng reads back identical")
    func pngRoundTrip() throws {
        let width = 5, height = 3
        let pixels: [UInt8] = (0..<(width * height * 3)).map { UInt8(($0 * 37) % 256) }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = UInt32(PNG_FORMAT_RGB)
        var size = 0
        // First call sizes the buffer, second writes it.
        #expect(png_image_write_to_memory(&image, nil, &size, 0, pixels, 0, nil) != 0)
        var encoded = [UInt8](repeating: 0, count: size)
        #expect(png_image_write_to_memory(&image, &encoded, &size, 0, pixels, 0, nil) != 0)
        #expect(Array(encoded.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])

        var reader = png_image()
        reader.version = UInt32(PNG_IMAGE_VERSION)
        #expect(png_image_begin_read_from_memory(&reader, encoded, size) != 0)
        #expect(reader.width == UInt32(width) && reader.height == UInt32(height))
        reader.format = UInt32(PNG_FORMAT_RGB)
        var decoded = [UInt8](repeating: 0, count: pixels.count)
        #expect(png_image_finish_read(&reader, nil, &decoded, 0, nil) != 0)
        #expect(decoded == pixels)
    }
}
