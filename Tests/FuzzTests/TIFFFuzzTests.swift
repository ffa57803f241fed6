import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// The TIFF path as the PNG path is fuzzed: mutated tiled, striped, JPEG and BigTIFF
/// files opened through `ImageInput` (format detection, libtiff or OpenSlide) and
/// read whole and in a random region. Every input must either read or throw a
/// `SlideError` naming the file: never a crash, a hang or an unexplained error.
@Suite("Fuzz: TIFF region sources")
struct TIFFFuzzTests {
    /// Small TIFFs written by tifffile (PyPI), one per layout and codec.
    static func seeds(in directory: TemporaryDirectory) throws -> [[UInt8]] {
        let script = """
            import sys, numpy as np, tifffile
            out = sys.argv[1]; rng = np.random.RandomState(7)
            rgb = rng.randint(0, 256, (40, 52, 3)).astype(np.uint8)
            smooth = (np.add.outer(np.arange(40), np.arange(52)) % 256).astype(np.uint8)
            pic = np.stack([smooth, smooth[::-1], 255 - smooth], -1)
            w = tifffile.imwrite
            w(out + '/0.tif', rgb, tile=(16, 16), compression='zlib', photometric='rgb')
            w(out + '/1.tif', pic, tile=(16, 16), compression='jpeg', photometric='ycbcr')
            w(out + '/2.tif', rgb[..., 0], rowsperstrip=7, compression='lzw', photometric='minisblack')
            w(out + '/3.tif', rgb.astype(np.uint16) * 257, tile=(16, 16), photometric='rgb')
            w(out + '/4.tif', rgb, bigtiff=True, tile=(16, 32), compression='packbits', photometric='rgb')
            with tifffile.TiffWriter(out + '/5.tif') as t:
                t.write(rgb, tile=(16, 16), compression='zlib', photometric='rgb')
                t.write(rgb[::2, ::2].copy(), tile=(16, 16), compression='zlib', photometric='rgb', subfiletype=1)
            """
        let (status, output) = try runCommand(["python3", "-c", script, directory.path])
        try #require(status == 0, "tifffile could not write the seeds: \(output)")
        return try (0..<6).map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory.file("\($0).tif")))) }
    }

    @Test("≥60 000 mutated TIFFs: open, read whole and a region — errors only, never a crash")
    func tiff() throws {
        let directory = try fuzzScratchDirectory()
        defer { directory.cleanup() }
        let seeds = try Self.seeds(in: directory)
        let path = directory.file("input.tif")
        // Every seed reads before mutation: the mutants start from valid files.
        for (i, seed) in seeds.enumerated() {
            try writeInput(seed, to: path)
            do {
                let source = try ImageInput.open(path: path).source
                _ = try source.readRegion(PixelRect(y: 0, x: 0, height: source.height, width: source.width))
            } catch {
                Issue.record("seed \(i) does not read: \(error)")
            }
        }
        let summary = runFuzz(target: "tiff", seed: 0x71FF, iterations: 60_000) { rng, _ in
            var b = rng.pick(seeds)
            ByteMutation.mutate(&b, &rng, donors: seeds)
            return b
        } body: { input in
            try writeInput(input, to: path)
            do {
                let source = try ImageInput.open(path: path).source
                guard source.width > 0, source.height > 0, [1, 3].contains(source.channels) else {
                    throw FuzzInvariantError("opened as \(source.width)×\(source.height)×\(source.channels)")
                }
                let whole = try source.readRegion(
                    PixelRect(
                        y: 0, x: 0, height: min(source.height, 256),
                        width: min(source.width, 256)))
                let limit = Float(source.bitDepth == 16 ? 65535 : 255)
                guard whole.samples.allSatisfy({ $0 >= 0 && $0 <= limit }) else {
                    throw FuzzInvariantError("a sample outside 0…\(limit)")
                }
                return .accepted
            } catch let e as SlideError {
                guard "\(e)".contains(path) else {
                    throw FuzzInvariantError("an error that does not name the file: \(e)")
                }
                return .rejected("\(e.kind)")
            } catch let e as ImageIOError {
                return .rejected(e.kind.rawValue)
            }
        }
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil)
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }
}
