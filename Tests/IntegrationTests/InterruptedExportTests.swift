import Foundation
import Testing

@testable import TesseraImage
@testable import TestSupport

/// Output audit 39 F2: Ctrl-C after the embedded job's new zarr was in place, while the TIFF
/// and `.npy` were written from it, left the new uint8 zarr beside the previous run's float32
/// TIFF and `.npy`, and said that it had removed "this run's unfinished outputs".
@Suite("An interrupted export")
struct InterruptedExportTests {
    @Test(
        "Ctrl-C while a run writes outputs from its finished zarr: no earlier run's outputs beside it, and the export command"
    )
    func interruptedExport() throws {
        let group = try ProcessGroup("interrupted-export")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 2000, width: 2000)
        let out = group.directory + "/out"
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "256", "--check", "0", "--out", out]
        let (s, l) = try SlideMapTests.coordinator(
            group, ["run"] + model + ["--outputs", "zarr,npy,tiff", image], log: "first")
        #expect(s == 0, "\(l)")
        let earlier = try #require(ClusterFixture.bytes(out + "/img.npy"))
        let second = try group.start(
            "tessera-coordinator",
            ["run"] + model + ["--outputs", "zarr,npy,tiff,prob", "--bit-depth", "16", "--dtype", "uint8", image],
            log: "second")
        // The outputs' temporary files appear only once the zarr is complete and in place.
        func exporting() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).contains {
                $0.hasPrefix(".img.") && $0.contains(".tmp-")
            }
        }
        let deadline = Date().addingTimeInterval(120)
        while !exporting() && second.isRunning && Date() < deadline { usleep(1000) }
        let caught = exporting()
        kill(second.processIdentifier, SIGINT)
        let status = group.wait(second, timeout: 60)
        let log = group.log("second")
        // The new map is complete whether the signal came during the export or after it.
        let store = try MapStore.open(at: out + "/img.zarr")
        #expect(store.isFinished && store.layout.dtype == .uint8, "\(log)")
        // Any .npy there is this run's (uint8 values as float32), not the earlier float32 map.
        if let npy = ClusterFixture.bytes(out + "/img.npy") { #expect(npy != earlier, "the earlier run's .npy stayed") }
        if caught && status == 130 {
            #expect(log.contains("The map itself is complete and kept: \(out)/img.zarr"), "\(log)")
            #expect(log.contains("tessera-coordinator export"), "\(log)")
        } else {
            #expect(status == 0, "\(log)")  // it finished first (a loaded machine): its outputs are whole
        }
    }

    /// Docs audit 49 F1: only the earlier outputs of the kinds a run wrote again were removed: after `--outputs
    /// zarr,npy,tiff` then `--outputs zarr` with another mean, the old `.npy` and TIFF stayed, up to 1.0 off.
    @Test("A new zarr map removes the earlier outputs of its name of every kind, embedded and in-process; others stay")
    func staleOutputsRemoved() throws {
        let group = try ProcessGroup("stale-outputs")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 200, width: 200)
        let out = group.directory + "/out"
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--check", "0", "--out", out]
        func listing() -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []) }
        // Files of those names beside no map are not a replaced map's: they stay (review: they were deleted).
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for name in ["img.labels.png", "img.prob-7.png", "img.npy"] {
            try Data("user's".utf8).write(to: URL(fileURLWithPath: out + "/" + name))
        }
        var (s, l) = try SlideMapTests.coordinator(group, ["run"] + model + ["--outputs", "zarr", image], log: "zero")
        #expect(s == 0, "\(l)")
        #expect(listing() == ["img.zarr", "img.labels.png", "img.prob-7.png", "img.npy"], "\(listing())")
        try FileManager.default.removeItem(atPath: out + "/img.zarr")
        (s, l) = try SlideMapTests.coordinator(
            group, ["run"] + model + ["--outputs", "zarr,npy,tiff,prob,labels,overlay", image], log: "first")
        #expect(s == 0, "\(l)")
        let all = listing()
        #expect(all.isSuperset(of: ["img.npy", "img.map.tiff", "img.labels.png", "img.overlay.png"]), "\(all)")
        try Data("mine".utf8).write(to: URL(fileURLWithPath: out + "/img.notes.txt"))
        (s, l) = try SlideMapTests.coordinator(group, ["run"] + model + ["--outputs", "zarr", image], log: "second")
        #expect(s == 0, "\(l)")
        #expect(listing() == ["img.zarr", "img.notes.txt"], "\(listing())")  // prob-7 (another net's) too
        #expect(l.contains("removed an earlier run's outputs"), "\(l)")
        // In-process: the outputs it writes are new, the others of its name go.
        for name in all where name != "img.zarr" {
            try Data("old".utf8).write(to: URL(fileURLWithPath: out + "/" + name))
        }
        (s, l) = try SlideMapTests.coordinator(
            group, ["run", "--in-process"] + model + ["--outputs", "zarr,npy", image], log: "third")
        #expect(s == 0, "\(l)")
        #expect(listing() == ["img.zarr", "img.npy", "img.notes.txt"], "\(listing())")
        #expect(ClusterFixture.bytes(out + "/img.npy") != Array("old".utf8))
    }

    /// Verification audit 40: the earlier outputs were removed with `removeItem`, which takes a folder made
    /// under an output's name while the image was mapped, with its contents.
    @Test(
        "A folder made under an output's name while the run maps is left with its contents, and the run fails naming it"
    )
    func folderStays() throws {
        let group = try ProcessGroup("export-folder")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 2000, width: 2000)
        let out = group.directory + "/out"
        let run = try group.start(
            "tessera-coordinator",
            ["run"] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--tile", "256", "--check", "0", "--outputs", "zarr,npy", "--out", out, image,
            ], log: "run")
        func mapping() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).contains { $0.contains(".partial-") }
        }
        let deadline = Date().addingTimeInterval(120)
        while !mapping() && run.isRunning && Date() < deadline { usleep(1000) }
        try #require(mapping(), "the run ended before its map store appeared: \(group.log("run"))")
        let notes = out + "/img.npy/precious/notes.txt"
        try FileManager.default.createDirectory(
            atPath: out + "/img.npy/precious", withIntermediateDirectories: true)
        try "user data".write(toFile: notes, atomically: true, encoding: .utf8)
        let status = group.wait(run, timeout: 120)
        #expect(status != 0, "\(group.log("run"))")
        #expect(group.log("run").contains("img.npy"), "\(group.log("run"))")
        #expect((try? String(contentsOfFile: notes, encoding: .utf8)) == "user data", "the folder's file is gone")
    }

    /// Review 32 R4: `run` killed with -9 while it wrote its outputs from the finished tile store left that store
    /// (the float map, `.STEM.chunks-JOB-RANDOM`) for good: no pid in its name, so no later run knew it was dead.
    @Test("The finished tile store of a run killed while writing its outputs is swept by the next run")
    func killedRunTileStoreSwept() throws {
        let group = try ProcessGroup("killed-export")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 2000, width: 2000)
        let out = group.directory + "/out"
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "256", "--check", "0", "--out", out]
        let first = try group.start(
            "tessera-coordinator", ["run"] + model + ["--outputs", "npy,tiff,prob", image], log: "first")
        // Without a zarr the job's store is hidden, renamed from its partial name once every tile is in.
        func finishedStore() -> String? {
            ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).first {
                $0.hasPrefix(".img.chunks") && !$0.contains(".partial-")
            }
        }
        let deadline = Date().addingTimeInterval(120)
        while finishedStore() == nil && first.isRunning && Date() < deadline { usleep(500) }
        let left = try #require(finishedStore(), "the run ended before its outputs were written: \(group.log("first"))")
        kill(first.processIdentifier, SIGKILL)
        _ = group.wait(first, timeout: 30)
        let (s, l) = try SlideMapTests.coordinator(group, ["run"] + model + ["--outputs", "npy", image], log: "second")
        #expect(s == 0, "\(l)")
        let hidden = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.hasPrefix(".") }
        #expect(hidden.isEmpty, "left after the second run: \(hidden) (the killed run's store: \(left))")

        // With --store the finished store is the done job's map: the same command writes its outputs from it,
        // computing nothing (review 33: the sweep removed it, and every tile was computed again).
        let stored = model + ["--store", group.directory + "/store", "--outputs", "npy,tiff,prob", image]
        try FileManager.default.removeItem(atPath: out)
        let third = try group.start("tessera-coordinator", ["run"] + stored, log: "third")
        // Killed once its outputs are being written (the job's end is recorded by then).
        func staging() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).contains {
                $0.contains(".outputs.partial-")
            }
        }
        let again = Date().addingTimeInterval(120)
        while !staging() && third.isRunning && Date() < again { usleep(500) }
        let kept = try #require(finishedStore(), "the run ended before its outputs were written: \(group.log("third"))")
        kill(third.processIdentifier, SIGKILL)
        _ = group.wait(third, timeout: 30)
        let (s4, l4) = try SlideMapTests.coordinator(group, ["run"] + stored, log: "fourth")
        #expect(s4 == 0, "\(l4)")
        // (Its staging folder is swept, not the store.)
        #expect(
            !l4.split(separator: "\n").contains { $0.contains("left unfinished") && $0.contains(".chunks.tmp-") },
            "\(l4)")
        #expect(!l4.contains("0/64 tasks"), "the map was computed again: \(l4)")
        #expect(FileManager.default.fileExists(atPath: out + "/img.npy"), "\(l4)")
        let after = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.hasPrefix(".") }
        #expect(after.isEmpty, "left after the fourth run: \(after) (the killed run's store: \(kept))")
    }
}
