/// A decoded PNG is what the engine reads pixels from.
extension PixelImage: PixelSource {}
