import CPNGIO
import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TesseraModel
@testable import TestSupport

/// Mutates `.npy` files: the header's shape, dtype, order, version and length
/// fields, and the bytes.
enum NPYMutator {
    static let dims = [
        "0", "1", "-1", "2", "65536", "2147483647", "2147483648", "4294967296", "9223372036854775807",
        "9223372036854775808", "99999999999999999999", "1e3", "", " ", "3,", "(1", "2)",
    ]
    static let descrs = ["'<f4'", "'<f8'", "'>f4'", "'|u1'", "'<i4'", "'<f4", "<f4", "'<f2'", "''"]

    static func seeds() -> [[UInt8]] {
        var rng = SplitMix64(seed: 7)
        var out: [[UInt8]] = []
        for shape in [[3, 4, 5], [2, 3], [7], [], [1, 1, 1, 1], [0, 3], [2, 2, 2]] {
            let n = shape.reduce(1, *)
            let data = (0..<n).flatMap { _ -> [UInt8] in
                let v = rng.nextUnitFloat().bitPattern.littleEndian
                return (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) }
            }
            var header = NPY.header(shape: shape)
            if shape.count == 2 {
                // A version 2.0 header (4-byte length), as NumPy writes for huge headers.
                let dict = Array(header[10...])
                header = NPY.magic + [2, 0] + [UInt8(dict.count & 0xFF), UInt8(dict.count >> 8), 0, 0] + dict
            }
            out.append(header + data)
        }
        return out
    }

    static func mutate(_ seed: [UInt8], _ rng: inout SplitMix64, donors: [[UInt8]]) -> [UInt8] {
        var b = seed
        for _ in 0..<(1 + rng.int(3)) {
            switch rng.int(8) {
            case 0, 1:  // a shape number
                let text = String(decoding: b, as: UTF8.self)
                if let open = text.range(of: "'shape': ("), let close = text[open.upperBound...].firstIndex(of: ")") {
                    var parts = text[open.upperBound..<close].split(separator: ",", omittingEmptySubsequences: false)
                        .map(String.init)
                    if parts.isEmpty { parts = [""] }
                    let i = rng.int(parts.count)
                    if rng.chance(3) { parts.insert(rng.pick(dims), at: i) } else { parts[i] = rng.pick(dims) }
                    let replaced = text[..<open.upperBound] + parts.joined(separator: ",") + text[close...]
                    // Keep the data bytes as they were (the text view may have altered invalid UTF-8).
                    let headerEnd = (b.firstIndex(of: 0x0A) ?? b.count - 1) + 1
                    let newHeaderEnd = (Array(replaced.utf8).firstIndex(of: 0x0A) ?? replaced.utf8.count - 1) + 1
                    b = Array(Array(replaced.utf8)[..<newHeaderEnd]) + Array(b[min(headerEnd, b.count)...])
                    if rng.chance(2) { fixLength(&b) }
                }
            case 2:  // dtype or order
                var text = String(decoding: b, as: UTF8.self)
                if rng.chance(2) {
                    text = text.replacingOccurrences(of: "'<f4'", with: rng.pick(descrs))
                } else {
                    text = text.replacingOccurrences(of: "False", with: rng.pick(["True", "0", "", "Fals"]))
                }
                if text.utf8.count == b.count || rng.chance(2) { b = Array(text.utf8) }
            case 3:  // header length field
                if b.count >= 10 {
                    let v = rng.interesting()
                    b[8] = UInt8(truncatingIfNeeded: v)
                    b[9] = UInt8(truncatingIfNeeded: v >> 8)
                    if b[6] >= 2, b.count >= 12 {
                        b[10] = UInt8(truncatingIfNeeded: v >> 16)
                        b[11] = UInt8(truncatingIfNeeded: v >> 24)
                    }
                }
            case 4:  // version
                if b.count > 7 { b[6] = rng.pick([0, 1, 2, 3, 4, 0xFF]) }
            case 5:  // data length: drop or add floats
                if rng.chance(2), b.count >= 4 {
                    b.removeLast(4 * (1 + rng.int(min(4, b.count / 4))))
                } else {
                    b += rng.bytes(4 * (1 + rng.int(4)))
                }
            default:
                ByteMutation.mutate(&b, &rng, donors: donors)
            }
        }
        return b
    }

    /// Rewrites the header length field to match the text up to its newline.
    static func fixLength(_ b: inout [UInt8]) {
        guard b.count >= 10, let newline = b.firstIndex(of: 0x0A) else { return }
        let start = b[6] >= 2 ? 12 : 10
        guard newline + 1 >= start else { return }
        let n = newline + 1 - start
        b[8] = UInt8(truncatingIfNeeded: n)
        b[9] = UInt8(truncatingIfNeeded: n >> 8)
        if start == 12 {
            b[10] = UInt8(truncatingIfNeeded: n >> 16)
            b[11] = UInt8(truncatingIfNeeded: n >> 24)
        }
    }
}

/// Builds and mutates PNGs chunk by chunk: IHDR fields corrupted and the CRC
/// fixed (so libpng gets past the CRC check), scanlines with bad filter bytes
/// recompressed into valid zlib, chunks dropped, duplicated, reordered or
/// borrowed from other files, lengths and CRCs lying.
enum PNGMutator {
    struct Chunk {
        var type: [UInt8]
        var data: [UInt8]
    }

    static func chunks(_ b: [UInt8]) -> [Chunk]? {
        guard b.count >= 8, Array(b[0..<8]) == pngSignature else { return nil }
        var out: [Chunk] = []
        var i = 8
        while i + 12 <= b.count {
            let n = Int(UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3]))
            guard n <= b.count - i - 12 else { return nil }
            out.append(Chunk(type: Array(b[(i + 4)..<(i + 8)]), data: Array(b[(i + 8)..<(i + 8 + n)])))
            i += 12 + n
        }
        return out
    }

    static func serialize(_ chunks: [Chunk]) -> [UInt8] {
        var out = pngSignature
        for c in chunks { out += pngChunk(String(decoding: c.type, as: UTF8.self), c.data) }
        return out
    }

    /// A zlib stream of stored (uncompressed) blocks: its bytes are the raw
    /// scanlines, so mutating them reaches libpng's unfiltering, not zlib's checks.
    static func storedZlib(_ raw: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var at = 0
        repeat {
            let n = min(65_535, raw.count - at)
            let last: UInt8 = at + n == raw.count ? 1 : 0
            out += [last, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += raw[at..<(at + n)]
            at += n
        } while at < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw {
            a = (a + UInt32(byte)) % 65_521
            b = (b + a) % 65_521
        }
        return out + bigEndian(b << 16 | a)
    }

    /// One seed: a file of `width`×`height` with raw (filtered) scanlines stored uncompressed.
    struct Seed {
        var width: UInt32, height: UInt32, bitDepth: UInt8, colorType: UInt8, interlaced: Bool
        var raw: [UInt8]
        var extra: [Chunk]

        var ihdr: [UInt8] {
            bigEndian(width) + bigEndian(height) + [bitDepth, colorType, 0, 0, interlaced ? 1 : 0]
        }

        var file: [UInt8] { PNGMutator.serialize(chunks) }

        var chunks: [Chunk] {
            [Chunk(type: Array("IHDR".utf8), data: ihdr)] + extra
                + [Chunk(type: Array("IDAT".utf8), data: storedZlib(raw)), Chunk(type: Array("IEND".utf8), data: [])]
        }
    }

    static func seeds() -> [Seed] {
        var rng = SplitMix64(seed: 0x9A6)
        var out: [Seed] = []
        let kinds: [(UInt8, [UInt8])] = [
            (0, [1, 2, 4, 8, 16]), (2, [8, 16]), (3, [1, 2, 4, 8]), (4, [8, 16]),
            (6, [8, 16]),
        ]
        for (colorType, depths) in kinds {
            for depth in depths {
                let width = UInt32(1 + rng.int(13)), height = UInt32(1 + rng.int(9))
                let samples = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][Int(colorType)]!
                let rowBytes = (Int(width) * samples * Int(depth) + 7) / 8
                // Non-interlaced raw data; for the interlaced variant the same bytes are a
                // plausible-length stream libpng will unfilter pass by pass (or refuse).
                var raw: [UInt8] = []
                for _ in 0..<height { raw += [UInt8(rng.int(5))] + rng.bytes(rowBytes) }
                var extra: [Chunk] = []
                if colorType == 3 {
                    let entries = 1 << min(Int(depth), 8)
                    extra.append(Chunk(type: Array("PLTE".utf8), data: rng.bytes(3 * entries)))
                    if rng.chance(2) { extra.append(Chunk(type: Array("tRNS".utf8), data: rng.bytes(entries))) }
                }
                let interlaced = rng.chance(3)
                out.append(
                    Seed(
                        width: width, height: height, bitDepth: depth, colorType: colorType,
                        interlaced: interlaced, raw: raw, extra: extra))
            }
        }
        return out
    }

    static let ancillary: [String] = [
        "gAMA", "sBIT", "bKGD", "tRNS", "iCCP", "zTXt", "sPLT", "cHRM", "sRGB",
        "pHYs", "tIME", "tEXt", "iTXt", "eXIf", "hIST", "PLTE", "IHDR", "IDAT",
        "IEND", "oFFs", "acTL", "fcTL", "xxxX", "AAAA",
    ]

    static func mutate(_ seed: Seed, _ rng: inout SplitMix64, donors: [Seed], files: [[UInt8]]) -> [UInt8] {
        var s = seed
        // Structured mutations first (consistent CRCs), then optionally raw damage.
        for _ in 0..<(1 + rng.int(3)) {
            switch rng.int(8) {
            case 0:  // width / height
                let v = rng.chance(2) ? UInt32(truncatingIfNeeded: rng.interesting()) : UInt32(rng.int(70_000))
                if rng.chance(2) { s.width = v } else { s.height = v }
            case 1: s.bitDepth = rng.pick([0, 1, 2, 3, 4, 5, 8, 16, 32, 255])
            case 2: s.colorType = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 255])
            case 3: s.interlaced.toggle()
            case 4:  // scanline damage: filter bytes and samples, still valid zlib
                if !s.raw.isEmpty {
                    let i = rng.int(s.raw.count)
                    s.raw[i] =
                        rng.chance(2)
                        ? rng.pick([0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFF]) : UInt8(truncatingIfNeeded: rng.next())
                }
            case 5:  // too much or too little image data
                if rng.chance(2), !s.raw.isEmpty {
                    s.raw.removeLast(1 + rng.int(s.raw.count))
                } else {
                    s.raw += rng.bytes(1 + rng.int(64))
                }
            case 6:  // an ancillary or critical chunk with random or borrowed content
                let type = rng.pick(ancillary)
                let donor = rng.pick(donors)
                let data = rng.chance(2) ? rng.bytes(rng.int(40)) : (donor.extra.first?.data ?? donor.ihdr)
                s.extra.insert(Chunk(type: Array(type.utf8), data: data), at: rng.int(s.extra.count + 1))
            default:  // drop, duplicate or swap extra chunks
                if !s.extra.isEmpty, rng.chance(2) {
                    s.extra.remove(at: rng.int(s.extra.count))
                } else {
                    s.extra += rng.pick(donors).extra
                }
            }
        }
        var chunks = s.chunks
        switch rng.int(6) {
        case 0:  // IDAT split into several chunks (some empty)
            if let i = chunks.firstIndex(where: { $0.type == Array("IDAT".utf8) }) {
                let d = chunks[i].data
                let cut = rng.int(d.count + 1)
                chunks[i].data = Array(d[..<cut])
                chunks.insert(Chunk(type: Array("IDAT".utf8), data: Array(d[cut...])), at: i + 1)
            }
        case 1:  // reorder two chunks
            let a = rng.int(chunks.count), b = rng.int(chunks.count)
            chunks.swapAt(a, b)
        case 2:  // damage a chunk's data, CRC fixed
            let i = rng.int(chunks.count)
            ByteMutation.mutate(&chunks[i].data, &rng, donors: files)
        default: break
        }
        var bytes = serialize(chunks)
        if rng.chance(5) {
            // Lies the CRC cannot cover: chunk lengths, CRCs, truncation, signature.
            ByteMutation.mutate(&bytes, &rng, donors: files)
        }
        return bytes
    }
}

@Suite("Image parser fuzzing")
struct ImageFuzzTests {
    @Test("≥100 000 mutated .npy files: read, as a map and as layer weights — errors only, never a crash")
    func npy() throws {
        let directory = try fuzzScratchDirectory()
        defer { directory.cleanup() }
        let path = directory.file("input.npy")
        let weightsDir = directory.file("weights")
        try FileManager.default.createDirectory(atPath: weightsDir, withIntermediateDirectories: true)
        let seeds = NPYMutator.seeds()
        // A one-layer net whose weights come from the mutated file (shape 2×3 as a 2-output, 3-input IP).
        let net = Net(
            name: "npy", inputName: "data", inputChannels: 3, patchSize: Size2(1, 1),
            layers: [
                Layer(
                    name: "ip",
                    op: .innerProduct(InnerProduct(outputs: 2, weights: [Float](repeating: 0, count: 6), bias: nil)),
                    bottoms: ["data"], tops: ["ip"])
            ])
        let summary = runFuzz(target: "npy", seed: 0x4E90, iterations: 100_000) { rng, _ in
            NPYMutator.mutate(rng.pick(seeds), &rng, donors: seeds)
        } body: { input in
            try writeInput(input, to: path)
            let array: NPY.FloatArray
            do {
                array = try NPY.read(path: path)
            } catch let e as ImageIOError {
                guard !e.detail.isEmpty else { throw FuzzInvariantError("an ImageIOError without detail") }
                return .rejected(e.kind.rawValue)
            }
            guard array.shape.reduce(1, { $0 * $1 }) == array.data.count else {
                throw FuzzInvariantError("shape \(array.shape) but \(array.data.count) values")
            }
            if array.shape.count == 3 {
                let map = try ProbabilityMap(npyPath: path)
                guard map.data.count == array.data.count else { throw FuzzInvariantError("map size differs") }
            }
            if array.shape == [2, 3] || array.shape.count <= 2 {
                try writeInput(input, to: weightsDir + "/ip.0.npy")
                do { _ = try net.fillingBlobs(fromNPYDirectory: weightsDir) } catch is ModelError {}
            }
            return .accepted
        }
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil)
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }

    @Test("≥100 000 mutated PNGs: header and full decode — errors only, never a crash or a huge allocation")
    func png() throws {
        let directory = try fuzzScratchDirectory()
        defer { directory.cleanup() }
        let path = directory.file("input.png")
        var seeds = PNGMutator.seeds()
        // The demo's real (compressed) label image as a seed too, if it parses.
        let demo = ModelFuzzSeeds.packageRoot.appendingPathComponent("models/demo/classical-labels.png")
        let demoBytes = (try? Data(contentsOf: demo)).map { [UInt8]($0) }
        let files = seeds.map(\.file) + (demoBytes.map { [$0] } ?? [])
        try #require(seeds.count >= 15)
        // Every seed decodes before mutation: the mutants start from valid files.
        for (i, s) in seeds.enumerated() where !s.interlaced {
            try writeInput(s.file, to: path)
            do { _ = try PNGReader.read(path: path) } catch {
                Issue.record("seed \(i) (colour type \(s.colorType), depth \(s.bitDepth)) does not decode: \(error)")
            }
        }
        seeds.removeAll { $0.raw.isEmpty }
        let summary = runFuzz(target: "png", seed: 0x9A6_F022, iterations: 100_000) { rng, _ in
            if let demoBytes, rng.chance(50) {
                var b = demoBytes
                if var c = PNGMutator.chunks(b), rng.chance(2) {
                    let i = rng.int(c.count)
                    ByteMutation.mutate(&c[i].data, &rng, donors: files)
                    b = PNGMutator.serialize(c)
                } else {
                    ByteMutation.mutate(&b, &rng, donors: files)
                }
                return b
            }
            return PNGMutator.mutate(rng.pick(seeds), &rng, donors: seeds, files: files)
        } body: { input in
            try writeInput(input, to: path)
            do {
                let header = try PNGReader.header(path: path)
                let image = try PNGReader.read(path: path)
                guard image.width == header.width, image.height == header.height, image.channels == header.channels
                else {
                    throw FuzzInvariantError(
                        "decoded \(image.width)×\(image.height)×\(image.channels), header said "
                            + "\(header.width)×\(header.height)×\(header.channels)")
                }
                return .accepted
            } catch let e as ImageIOError {
                guard !e.detail.isEmpty else { throw FuzzInvariantError("an ImageIOError without detail") }
                guard e.kind != .invalidArgument, e.kind != .io, e.kind != .cannotOpen else {
                    throw FuzzInvariantError("reader misuse or I/O failure on a plain file: \(e)")
                }
                return .rejected(e.kind.rawValue)
            }
        }
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil)
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }
}
