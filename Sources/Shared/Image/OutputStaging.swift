import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The single-file outputs of one map (TIFF, PNGs, `.npy`), written together: each
/// goes into a hidden folder beside its place (`.STEM.outputs.partial-PID-RANDOM` in
/// the output folder: same file system, so each move is a rename, and one a killed
/// process left is removed like its other `.partial-PID` files), and all are moved
/// into place only once every one is complete. A failure part-way (a full disk)
/// leaves the earlier files of these names as they were: never this map's PNGs
/// beside an earlier map's `.npy` (audit 53 F4).
package final class OutputStaging {
    /// Where the outputs go.
    package let directory: String
    /// The hidden folder they are written in first.
    package let path: String

    package init(directory: String, stem: String) throws {
        self.directory = directory
        path = "\(directory)/.\(stem).outputs.partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(path, 0o755) == 0 else {
            throw OutputSetError(description: "\(directory): cannot make a folder for the outputs: \(errnoText())")
        }
    }

    /// Runs `body` with `options` writing into a staging folder (it returns the paths it wrote
    /// there), then moves them into place after `beforeMove`; returns their final paths.
    package static func write(
        _ options: OutputOptions, beforeMove: () throws -> Void = {}, _ body: (OutputOptions) throws -> [String]
    ) throws -> [String] {
        let staging = try OutputStaging(directory: options.directory, stem: options.stem)
        defer { staging.remove() }
        let written: [String]
        do {
            written = try body(staging.staged(options))
        } catch {
            throw staging.explain(error, stem: options.stem)
        }
        return try staging.commit(written, beforeMove: beforeMove)
    }

    /// `options` writing into the staging folder.
    package func staged(_ options: OutputOptions) -> OutputOptions {
        var staged = options
        staged.directory = path
        return staged
    }

    /// Moves the files written in the staging folder (`staged`, their paths there) into
    /// place, after `beforeMove` (which may move a store into place too); returns their
    /// final paths. A folder in the way of any of them is found before any is moved.
    package func commit(_ staged: [String], beforeMove: () throws -> Void = {}) throws -> [String] {
        let moves = staged.map { ($0, "\(directory)/\(AtomicFile.split($0).1)") }
        for (_, target) in moves {
            var info = stat()
            if lstat(target, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
                throw OutputSetError(
                    description: "\(target) is a folder: the output of that name cannot take its place; "
                        + "none of the outputs was written")
            }
        }
        try beforeMove()
        for (index, (from, to)) in moves.enumerated() where rename(from, to) != 0 {
            let moved = moves[..<index].map(\.1)
            throw OutputSetError(
                description: "\(to): cannot move the finished file into place: \(errnoText())"
                    + (moved.isEmpty ? "" : "; moved already: \(moved.joined(separator: ", "))"))
        }
        AtomicFile.syncDirectory(directory)
        return moves.map(\.1)
    }

    /// Removes the staging folder and whatever is left in it.
    package func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// An error of writing into the staging folder, told as of the output folder, with
    /// what it left: nothing of these names was replaced. Errors that do not name the
    /// staging folder (a damaged input read for the overlay) are passed on unchanged.
    package func explain(_ error: any Error, stem: String) -> any Error {
        let text = "\(error)"
        guard text.contains(path) else { return error }
        return OutputSetError(
            description: text.replacingOccurrences(of: path, with: directory)
                + " (no file output of \(stem) was written: they are moved into place together once all are complete)")
    }
}

/// Why a set of outputs could not be written or moved into place.
package struct OutputSetError: Error, CustomStringConvertible {
    package let description: String
}
