import Testing

@testable import TesseraCore
@testable import TesseraImage

@Suite("Quantisation")
struct DTypeTests {
    @Test func integerTypesRoundClampAndMapNaNToZero() {
        let values: [Float] = [0, 1, 0.5, -0.2, 1.7, .nan, 0.5 / 255, 1.5 / 255, 0.3]
        let bytes8 = values.withUnsafeBufferPointer { MapDType.uint8.encode(values: $0) }
        #expect(bytes8 == [0, 255, 128, 0, 255, 0, 1, 2, 77])
        let bytes16 = values.withUnsafeBufferPointer { MapDType.uint16.encode(values: $0) }
        let words = stride(from: 0, to: bytes16.count, by: 2).map { UInt16(bytes16[$0]) | UInt16(bytes16[$0 + 1]) << 8 }
        #expect(words == [0, 65535, 32768, 0, 65535, 0, 129, 386, 19661])
    }

    @Test(arguments: MapDType.allCases)
    func encodingIsLittleEndianAndSized(_ dtype: MapDType) {
        let values: [Float] = [0.25, 1]
        let bytes = values.withUnsafeBufferPointer { dtype.encode(values: $0) }
        #expect(bytes.count == 2 * dtype.size)
        switch dtype {
        case .float32: #expect(bytes == [0, 0, 0x80, 0x3e, 0, 0, 0x80, 0x3f])
        case .float16: #expect(bytes == [0x00, 0x34, 0x00, 0x3c])
        case .uint8: #expect(bytes == [64, 255])
        case .uint16: #expect(bytes == [0x00, 0x40, 0xff, 0xff])
        }
    }
}
