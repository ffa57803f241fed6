import Foundation

extension StoreMetadata {
    /// Why a level's `.zarray` (its bytes) is not the array the recorded layout (`.zattrs`) describes, naming
    /// each field that differs with both values (audit 53 F9: one message, "does not match", for any damage);
    /// nil when it is that array. Compared as JSON, so a reader's tool that re-indents or reorders it is not
    /// refused for it.
    static func zarrayMismatch(_ bytes: [UInt8], layout: MapLayout, level: Int) -> String? {
        let expectedText = zarray(layout, level: level)
        if String(decoding: bytes, as: UTF8.self) == expectedText { return nil }
        guard
            let expected = try? JSONSerialization.jsonObject(with: Data(expectedText.utf8)) as? [String: Any]
        else { return "the recorded layout gives no array description (a bug)" }
        let found: Any
        do {
            found = try JSONSerialization.jsonObject(with: Data(bytes))
        } catch {
            let what = bytes.isEmpty ? "it is empty" : "it is not valid JSON (\(bytes.count) bytes)"
            return
                "level \(level)'s array description is damaged: \(what); the recorded layout says \(summary(expected))"
        }
        guard let object = found as? [String: Any] else {
            return "level \(level)'s array description is damaged: it is JSON but not an object; "
                + "the recorded layout says \(summary(expected))"
        }
        var differences: [String] = []
        for key in expected.keys.sorted(by: { fieldOrder($0) < fieldOrder($1) }) {
            guard let value = object[key] else {
                differences.append("\"\(key)\" is missing (the layout says \(json(expected[key]!)))")
                continue
            }
            if !same(value, expected[key]!) {
                differences.append("\"\(key)\" is \(json(value)), the layout says \(json(expected[key]!))")
            }
        }
        for key in object.keys.sorted() where expected[key] == nil {
            differences.append("\"\(key)\" is not a field Tessera writes (\(json(object[key]!)))")
        }
        guard !differences.isEmpty else { return nil }
        return "level \(level)'s array does not match the map's recorded layout (.zattrs): "
            + differences.joined(separator: "; ")
    }

    /// The order `zarray` writes its fields in, so messages name them in the file's order.
    private static func fieldOrder(_ key: String) -> Int {
        [
            "zarr_format", "shape", "chunks", "dtype", "compressor", "fill_value", "order", "filters",
            "dimension_separator",
        ].firstIndex(of: key) ?? 99
    }

    private static func summary(_ expected: [String: Any]) -> String {
        "shape \(json(expected["shape"] ?? "?")), chunks \(json(expected["chunks"] ?? "?")), dtype "
            + json(expected["dtype"] ?? "?")
    }

    /// JSON equality: numbers by value (1 and 1.0 are one number), objects whatever their key order.
    private static func same(_ a: Any, _ b: Any) -> Bool {
        if let x = a as? [Any], let y = b as? [Any] { return x.count == y.count && zip(x, y).allSatisfy(same) }
        if let x = a as? [String: Any], let y = b as? [String: Any] {
            return x.count == y.count && x.allSatisfy { key, value in y[key].map { same(value, $0) } ?? false }
        }
        if let x = a as? String, let y = b as? String { return x == y }
        if a is NSNull || b is NSNull { return a is NSNull && b is NSNull }
        if let x = number(a), let y = number(b) { return x == y }
        return json(a) == json(b)
    }

    private static func number(_ value: Any) -> Double? {
        if value is String { return nil }
        return (value as? Double) ?? (value as? Int).map(Double.init) ?? (value as? NSNumber)?.doubleValue
    }

    /// A value as compact JSON (a fragment for strings and numbers), cut to 120 characters.
    private static func json(_ value: Any) -> String {
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes])
        else { return "\(value)" }
        let text = String(decoding: data, as: UTF8.self)
        return text.count > 120 ? String(text.prefix(117)) + "..." : text
    }
}
