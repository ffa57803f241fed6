import Foundation

/// What Tessera reads of an OME-TIFF's OME-XML (directory 0's ImageDescription): its `<Image>`
/// elements, where each one's pixels start, its name and its attributes. Read by plain text
/// search, as the rest of the file's tags are: no XML parser for a few attributes.
enum OMEXML {
    /// Micrometres in one OME length unit (`PhysicalSizeXUnit`, UnitsLength); nil for one not listed.
    static func micrometres(perUnit unit: String) -> Double? {
        // A switch, not a dictionary literal: "Å" and the angstrom sign are equal Strings (canonically
        // equivalent), which a literal's duplicate-key check traps on.
        switch unit {
        case "pm": 1e-6
        case "Å": 1e-4
        case "nm": 1e-3
        case "µm", "\u{03BC}m", "um": 1
        case "mm": 1e3
        case "cm": 1e4
        case "dm": 1e5
        case "m": 1e6
        case "in": 25_400
        case "pt": 25_400 / 72.0
        default: nil
        }
    }

    /// One `<Image>` element.
    struct Image: Sendable, Equatable {
        /// The element's text, `<Image …>` to `</Image>`.
        let xml: String
        /// Its `Name` attribute, when it has one.
        let name: String?
        /// The main-chain directory (IFD) its first `TiffData` starts at: 0 when the `TiffData`
        /// names none, nil when the image has no `TiffData` (its pixels are not in a TIFF).
        let ifd: Int?
        /// The file its first `TiffData` names (`<UUID FileName="…">`), when it names one.
        let fileName: String?

        /// Whether its pixels are in the file called `name` (a multi-file OME-TIFF lists every file's images).
        func isStored(inFileNamed name: String) -> Bool {
            guard ifd != nil else { return false }
            guard let fileName else { return true }
            return (fileName as NSString).lastPathComponent == name
        }
    }

    /// The `<Image>` elements of `xml`, in document order.
    static func images(in xml: String) -> [Image] {
        var images: [Image] = []
        var rest = xml[...]
        while let start = rest.range(of: "<Image ") ?? rest.range(of: "<Image>") {
            let end = rest[start.upperBound...].range(of: "</Image>")?.upperBound ?? rest.endIndex
            images.append(image(String(rest[start.lowerBound..<end])))
            rest = rest[end...]
        }
        return images
    }

    private static func image(_ xml: String) -> Image {
        let startTag = String(xml.prefix { $0 != ">" })
        let name = string(after: " Name=\"", in: startTag).map(unescaped)
        guard let data = xml.range(of: "<TiffData") else { return Image(xml: xml, name: name, ifd: nil, fileName: nil) }
        let tag = String(xml[data.upperBound...].prefix { $0 != ">" })
        let ifd = number(after: "IFD=\"", in: tag).map(Int.init) ?? 0
        // A TiffData that is not self-closing may hold a UUID naming the file its planes are in.
        var fileName: String?
        if !tag.hasSuffix("/") {
            let body = xml[data.upperBound...]
            let element = body[..<(body.range(of: "</TiffData>")?.lowerBound ?? body.endIndex)]
            if let uuid = element.range(of: "<UUID") {
                let uuidTag = String(element[uuid.upperBound...].prefix { $0 != ">" })
                fileName = string(after: "FileName=\"", in: uuidTag).map(unescaped)
            }
        }
        return Image(xml: xml, name: name, ifd: max(0, ifd), fileName: fileName)
    }

    /// The image whose pixels start at IFD `ifd` (a `TiffData` without `IFD` starts at 0), or the
    /// only image when none does; and how many images the XML lists.
    static func image(storedAt ifd: Int, in xml: String) -> (Image?, Int) {
        let images = images(in: xml)
        let match = images.first { $0.ifd == ifd }
        return (match ?? (images.count == 1 ? images[0] : nil), images.count)
    }

    /// The value after `marker`, up to a quote, `|` or line end, trimmed.
    static func string(after marker: String, in text: String) -> String? {
        guard let range = text.range(of: marker) else { return nil }
        let rest = text[range.upperBound...]
        let end = rest.firstIndex { $0 == "\"" || $0 == "|" || $0 == "\n" || $0 == "\r" } ?? rest.endIndex
        return String(rest[..<end]).trimmingCharacters(in: .whitespaces)
    }

    /// The finite number after `marker`.
    static func number(after marker: String, in text: String) -> Double? {
        string(after: marker, in: text).flatMap { Double($0) }.flatMap { $0.isFinite ? $0 : nil }
    }

    /// An attribute value with XML's five predefined entities replaced.
    private static func unescaped(_ value: String) -> String {
        guard value.contains("&") else { return value }
        return value.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
