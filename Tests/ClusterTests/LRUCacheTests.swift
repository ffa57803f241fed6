import Testing

@testable import TesseraCluster

/// The worker's caches (models, engines, open images and map stores): when full, the
/// entry used least recently goes, not all of them (#18: "caches are emptied all at
/// once when full").
@Suite("LRUCache")
struct LRUCacheTests {
    @Test("a full cache drops only the least recently used entry; a get counts as a use")
    func evictsOne() {
        var cache = LRUCache<String, Int>(capacity: 3)
        #expect(cache.insert(1, for: "a") == nil)
        #expect(cache.insert(2, for: "b") == nil)
        #expect(cache.insert(3, for: "c") == nil)
        #expect(cache.get("a") == 1)  // a is now the most recently used
        #expect(cache.insert(4, for: "d") == "b")
        #expect(cache.count == 3)
        #expect(cache.get("b") == nil)
        #expect(cache.get("a") == 1 && cache.get("c") == 3 && cache.get("d") == 4)
        // Replacing a present key evicts nothing.
        #expect(cache.insert(30, for: "c") == nil)
        #expect(cache.get("c") == 30 && cache.count == 3)
        #expect(cache.keys == ["a", "d", "c"])
    }
}
