import CSlideIO
import TesseraCore

/// A directory's pixel layout, checked against what `TIFFRegionSource` can deliver.
struct TIFFLayout: Sendable, Equatable {
    let width: Int
    let height: Int
    let tiled: Bool
    /// Tile size, or (image width, rows per strip) for strips.
    let chunkWidth: Int
    let chunkHeight: Int
    let chunksAcross: Int
    let chunksDown: Int
    /// Decoded bytes of one full tile or strip.
    let chunkBytes: Int
    let samplesPerPixel: Int
    /// PlanarConfiguration 2: each sample has its own tiles (all of sample 0's, then sample 1's, …).
    let planar: Bool
    /// Samples per pixel inside one decoded tile: 1 when planar, else `samplesPerPixel`.
    let chunkSamplesPerPixel: Int
    /// Tiles (or strips) of one plane.
    let planeChunks: Int
    let bytesPerSample: Int
    /// 1 (gray) or 3 (RGB): the first `channels` samples of each pixel are delivered, the rest (alpha) dropped.
    let channels: Int
    /// MinIsWhite: samples are inverted so that 0 is black, as for every other gray image.
    let invert: Bool
    let compression: Int
    let photometric: Int
    let subfileType: UInt32

    /// Decoded tiles above this size are refused: a damaged header must not make us allocate gigabytes.
    static let maxChunkBytes = 256 << 20

    init(_ info: tsl_dir_info, path: String, level: Int) throws {
        func fail(_ kind: SlideError.Kind, _ detail: String) -> SlideError {
            SlideError(kind, path: path, level: level, detail: detail)
        }
        width = Int(info.width)
        height = Int(info.height)
        tiled = info.tiled != 0
        chunkWidth = Int(info.tile_width)
        chunkHeight = Int(info.tile_height)
        samplesPerPixel = Int(info.samples_per_pixel)
        compression = Int(info.compression)
        photometric = Int(info.photometric)
        subfileType = info.subfile_type
        guard width > 0, height > 0, chunkWidth > 0, chunkHeight > 0, samplesPerPixel > 0 else {
            throw fail(
                .corruptFile,
                "impossible sizes: image \(width)×\(height), tile \(chunkWidth)×\(chunkHeight),"
                    + " \(samplesPerPixel) samples per pixel")
        }
        guard info.codec_configured != 0 else {
            throw fail(.unsupportedCompression(compression), "this libtiff build has no decoder for it")
        }
        switch info.sample_format {
        case 1: break
        case 2: throw fail(.unsupportedSampleFormat("signed integer"), "only unsigned integer samples are read")
        case 3: throw fail(.unsupportedSampleFormat("floating point"), "only unsigned integer samples are read")
        default:
            throw fail(
                .unsupportedSampleFormat("SampleFormat \(info.sample_format)"),
                "only unsigned integer samples are read")
        }
        guard info.bits_per_sample == 8 || info.bits_per_sample == 16 else {
            throw fail(.unsupportedSampleFormat("\(info.bits_per_sample)-bit"), "only 8- and 16-bit samples are read")
        }
        bytesPerSample = Int(info.bits_per_sample) / 8
        switch photometric {
        case 0, 1:
            channels = 1
        case 2 where samplesPerPixel >= 3:
            channels = 3
        case 6 where compression == 7:
            channels = 3  // libtiff converts JPEG YCbCr to RGB (JPEGCOLORMODE_RGB)
        default:
            throw fail(
                .unsupportedPhotometric(photometric),
                "\(samplesPerPixel) samples per pixel, compression \(TIFFNames.compression(compression))")
        }
        // Samples beyond gray's one or RGB's three that ExtraSamples does not declare alpha are more
        // channels (fluorescence, a mis-tagged RGB): mapping the first alone would be wrong, silently.
        let undeclared = samplesPerPixel - Int(info.alpha_samples) - channels
        if undeclared > 0 && (channels == 1 || samplesPerPixel > 4) {
            throw fail(
                .unsupportedSampleFormat("\(samplesPerPixel) samples per pixel"),
                "Photometric \(photometric == 2 ? "RGB" : "gray") with \(samplesPerPixel) samples per pixel, "
                    + "\(info.alpha_samples) of them alpha: only the first "
                    + "\(channels == 1 ? "one" : "three") would be read. Tessera maps gray or RGB images "
                    + "(plus alpha); write one channel per file, or an RGB image")
        }
        invert = photometric == 0
        planar = info.planar_config == 2 && samplesPerPixel > 1
        chunkSamplesPerPixel = planar ? 1 : samplesPerPixel
        chunksAcross = (width + chunkWidth - 1) / chunkWidth
        chunksDown = (height + chunkHeight - 1) / chunkHeight
        // In Double first: a damaged header's sizes (up to 2³² each) would overflow Int and trap.
        let bytes = Double(chunkWidth) * Double(chunkHeight) * Double(chunkSamplesPerPixel) * Double(bytesPerSample)
        guard bytes <= Double(Self.maxChunkBytes), Int(info.chunk_size) <= Self.maxChunkBytes else {
            throw fail(
                .unsupportedLayout,
                "a \(tiled ? "tile" : "strip") of \(chunkWidth)×\(chunkHeight) pixels"
                    + " × \(samplesPerPixel) samples exceeds the \(Self.maxChunkBytes >> 20) MiB limit; if the "
                    + "file is intact, rewrite it in tiles: tiffcp -m 0 -t -w 512 -l 512 IN.tif OUT.tif (-m 0 lifts tiffcp's own memory limit)"
            )
        }
        let expected = Int(bytes)
        guard Int(info.chunk_size) >= expected else {
            throw fail(
                .corruptFile,
                "libtiff sizes a \(tiled ? "tile" : "strip") at \(info.chunk_size) bytes,"
                    + " fewer than its \(chunkWidth)×\(chunkHeight)×\(chunkSamplesPerPixel) samples need")
        }
        chunkBytes = Int(info.chunk_size)
        let planes = Double(planar ? samplesPerPixel : 1)
        guard Double(info.chunk_count) >= Double(chunksAcross) * Double(chunksDown) * planes else {
            throw fail(
                .corruptFile,
                "the directory lists \(info.chunk_count) \(tiled ? "tiles" : "strips"),"
                    + " fewer than the \(chunksAcross)×\(chunksDown)×\(Int(planes)) its size needs")
        }
        planeChunks = chunksAcross * chunksDown
    }

    /// The pixel rectangle tile/strip `index` covers (clipped to the image), whichever plane it belongs to.
    func chunkRect(_ index: Int) -> PixelRect {
        let position = index % planeChunks
        let y = position / chunksAcross * chunkHeight
        let x = position % chunksAcross * chunkWidth
        return PixelRect(y: y, x: x, height: min(chunkHeight, height - y), width: min(chunkWidth, width - x))
    }
}
