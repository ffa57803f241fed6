import TesseraCore

/// One image of a file (`TIFFImages`), as `inspect-image` lists it.
package struct SlideImageSummary: Sendable, Equatable, CustomStringConvertible {
    /// From 1, as `--image` takes it.
    package let number: Int
    /// Its name in the OME-XML, when it has one.
    package let name: String?
    /// Level 0's size (nil when the image cannot be read).
    package let width: Int?
    package let height: Int?
    package let levelCount: Int
    /// Level 0's µm/px, when declared.
    package let mpp: Double?
    /// Why it cannot be mapped, when it cannot.
    package let problem: String?

    package init(
        number: Int, name: String?, width: Int?, height: Int?, levelCount: Int, mpp: Double?, problem: String?
    ) {
        self.number = number
        self.name = name
        self.width = width
        self.height = height
        self.levelCount = levelCount
        self.mpp = mpp
        self.problem = problem
    }

    /// The summary of image `number` of a TIFF (read by `TIFFStructure.images`), or why it cannot be read.
    static func of(
        _ number: Int, path: String, handle: TIFFHandle, images: (TIFFImages, description: String?)
    ) -> SlideImageSummary {
        let name = images.0.entries[number - 1].name
        do {
            let structure = try TIFFStructure(path: path, handle: handle, images: images, image: number)
            return SlideImageSummary(structure)
        } catch let error as SlideError {
            return SlideImageSummary(
                number: number, name: name, width: nil, height: nil, levelCount: 0, mpp: nil,
                problem: "\(error.kind): \(error.detail)")
        } catch {
            return SlideImageSummary(
                number: number, name: name, width: nil, height: nil, levelCount: 0, mpp: nil, problem: "\(error)")
        }
    }

    init(_ structure: TIFFStructure) {
        let base = structure.levels[0].info
        self.init(
            number: structure.image, name: structure.imageName, width: base.width, height: base.height,
            levelCount: structure.levels.count, mpp: base.mpp, problem: nil)
    }

    /// "image 2: 240×200, 2 levels, 0.5 µm/px, "scene two"".
    package var description: String {
        var parts: [String] = []
        if let width, let height {
            parts.append("\(width)×\(height)")
            parts.append("\(levelCount) level\(levelCount == 1 ? "" : "s")")
            parts.append(mpp.map { "\(formatNumber($0)) µm/px" } ?? "µm/px unknown")
        }
        if let name { parts.append("\"\(name)\"") }
        if let problem { parts.append("cannot be mapped: \(problem)") }
        return "image \(number): " + parts.joined(separator: ", ")
    }
}
