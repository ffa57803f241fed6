import TesseraCore

/// Human names of TIFF tag values, for `SlideInfo` and error messages.
enum TIFFNames {
    static func compression(_ code: Int) -> String {
        switch code {
        case 1: return "none"
        case 2: return "CCITT RLE"
        case 3: return "CCITT G3"
        case 4: return "CCITT G4"
        case 5: return "LZW"
        case 6: return "old JPEG"
        case 7: return "JPEG"
        case 8, 32946: return "deflate"
        case 32773: return "PackBits"
        case 33003, 33005, 34712: return "JPEG 2000"
        case 34887: return "LERC"
        case 34925: return "LZMA"
        case 50000: return "ZSTD"
        case 50001: return "WebP"
        case 50002, 52546: return "JPEG XL"
        default: return "compression \(code)"
        }
    }

    static func photometric(_ code: Int) -> String {
        switch code {
        case 0: return "min-is-white"
        case 1: return "min-is-black"
        case 2: return "RGB"
        case 3: return "palette"
        case 4: return "mask"
        case 5: return "separated (CMYK)"
        case 6: return "YCbCr"
        case 8: return "CIE L*a*b*"
        default: return "photometric \(code)"
        }
    }
}
