import Testing

@testable import TesseraCluster
@testable import TesseraCore

@Suite("SHA-256 (FIPS 180-4 vectors)")
struct SHA256Tests {
    static func hex(_ b: [UInt8]) -> String { b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    @Test(
        "FIPS 180-4 / NIST example messages",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
            (
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
            ),
        ])
    func vectors(_ input: String, _ expected: String) {
        #expect(Self.hex(SHA256.hash(Array(input.utf8))) == expected)
    }

    @Test("One million 'a', fed in uneven pieces")
    func millionA() {
        var h = SHA256()
        var left = 1_000_000
        var piece = 1
        while left > 0 {
            let n = min(left, piece)
            h.update([UInt8](repeating: 0x61, count: n))
            left -= n
            piece = piece * 3 % 1000 + 1
        }
        #expect(Self.hex(h.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("Model digests: the size prefix separates prototxt from weights")
    func modelDigest() {
        let a = ModelBundle(prototxt: [1, 2], weights: [3])
        let b = ModelBundle(prototxt: [1], weights: [2, 3])
        #expect(a.digest != b.digest)
        #expect(a.digest == ModelBundle(prototxt: [1, 2], weights: [3]).digest)
    }
}
