import CPNGIO
import Foundation

/// A decompression bomb: a `width`×`height` all-zero RGB PNG, written row by row at
/// zlib's level 9, so its file is tiny (about 1.2 MB for 20 000²) while decoding it
/// takes width × height × 3 bytes. Returns the file's size.
@discardableResult
package func writeBombPNG(to path: String, width: Int, height: Int) throws -> Int {
    var message = [CChar](repeating: 0, count: 512)
    var writer: OpaquePointer?
    func check(_ status: Int32) throws {
        guard status == Int32(TPNG_OK.rawValue) else {
            throw NSError(
                domain: "BombPNG", code: Int(status),
                userInfo: [NSLocalizedDescriptionKey: String(cString: message)])
        }
    }
    try check(tpng_writer_open(path, UInt32(width), UInt32(height), 3, 8, 9, &writer, &message, message.count))
    defer { tpng_writer_close(writer) }
    let row = [UInt8](repeating: 0, count: width * 3)
    for _ in 0..<height { try check(tpng_writer_write_row(writer, row, &message, message.count)) }
    try check(tpng_writer_finish(writer, &message, message.count))
    return (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
}

/// A process's peak resident set size in bytes (Linux: VmHWM in /proc/PID/status), nil if unknown.
package func peakResidentBytes(of pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return nil }
    let kb = line.split(separator: " ").compactMap { Int($0) }.first
    return kb.map { $0 * 1024 }
}
