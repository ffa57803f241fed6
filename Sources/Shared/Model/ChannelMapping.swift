/// Which image channel feeds each of the net's input channels.
package enum ChannelMapping {
    /// For a net with `netChannels` inputs trained on `order`, reading an image
    /// with `imageChannels` (1 gray, 3 RGB). Gray images are expanded to every
    /// net channel; a colour image for a one-channel net is refused.
    package static func resolve(
        imageChannels: Int, netChannels: Int,
        order: Preprocessing.ChannelOrder
    ) throws -> [Int] {
        if imageChannels == 1 { return [Int](repeating: 0, count: netChannels) }
        if imageChannels == 3, netChannels == 3 { return order == .bgr ? [2, 1, 0] : [0, 1, 2] }
        throw ModelError(
            .preprocessing,
            "the net takes \(netChannels) input channel(s) but the image has \(imageChannels); "
                + (netChannels == 1 ? "convert the image to gray first" : "this combination is not supported"))
    }
}
