import Foundation
import Testing

@testable import TestSupport

extension DiskFullTests {
    /// Audit 55 F7: an upload job whose tiles fit the coordinator's store but whose outputs did not failed with
    /// "No space left on device", and its computed map was thrown away.
    @Test(
        "An upload job whose outputs do not fit the store keeps its map, says why it waits, and writes them once there is room",
        .enabled(if: available, "needs root, unshare and nsenter to mount a small tmpfs in a mount namespace"))
    func outputsWaitForRoom() throws {
        let group = try ProcessGroup("disk-full-outputs")
        defer { group.stop() }
        let disk = try TmpfsCoordinator(group, size: "32m")
        let (workers, clients) = try disk.startCoordinator("coordinator")
        try group.startWorker(workers, name: "w1", threads: 2)
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 600)
        // (An upload job writes PNGs; its .npy is served from the map's chunks.)
        let outputs = ["img.prob-0.png", "img.prob-1.png", "img.prob-2.png", "img.labels.png", "img.overlay.png"]
        let flags =
            ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "200", "--outputs", "npy,prob,labels,overlay"]
        // Job 1, on an empty disk, measures what a job leaves (its map's chunks and its PNGs).
        let before = try disk.free()
        var (code, text) = try disk.client(
            ["submit", "--wait"] + flags + ["--out", group.directory + "/first", image], clients, log: "submit-1")
        try #require(code == 0, "\(text)")
        let first = try outputs.map { try #require(ClusterFixture.bytes(group.directory + "/first/" + $0), "\($0)") }
        let pngs = first.reduce(0) { $0 + $1.count }
        let left = before - (try disk.free())
        // Room for job 2's image (sent raw) and tiles, and for a quarter of its PNGs.
        let room = left - pngs + 600 * 600 * 3 + pngs / 4
        let (filled, fillText) = try disk.shell("head -c \(try disk.free() - room) /dev/zero > \"$0/filler\"")
        try #require(filled == 0, "\(fillText)")

        (code, text) = try disk.client(
            ["submit"] + flags + ["--out", group.directory + "/unused", image], clients, log: "submit-2")
        try #require(code == 0 && text.contains("job 2"), "\(text)")
        let deadline = Date().addingTimeInterval(60)
        var status = ""
        while !status.contains("no room for the outputs") && !status.contains("job 2: failed") && Date() < deadline {
            status = try disk.client(["status", "2"], clients, log: "status").1
            usleep(200_000)
        }
        #expect(
            status.contains("waiting for the coordinator's store: no room for the outputs")
                && status.contains("No space left on device") && status.contains("cancel the job to give up"),
            "\(status)\n\(group.log("coordinator"))")
        // It stays so while the disk is full (it is not tried again and again, nor failed).
        usleep(3_000_000)
        let still = try disk.client(["status", "2"], clients, log: "status").1
        #expect(still.contains("job 2: running") && still.contains("no room for the outputs"), "\(still)")

        let (freed, freeText) = try disk.shell("rm -f \"$0/filler\"")
        try #require(freed == 0, "\(freeText)")
        let done = try disk.statusOnce(2, clients, timeout: 30)
        #expect(done.contains("job 2: done"), "\(done)\n\(group.log("coordinator"))")
        #expect(!done.contains("no room for the outputs"), "the wait's note outlived it: \(done)")
        (code, text) = try disk.client(["fetch", "2", "--out", group.directory + "/second"], clients, log: "fetch-2")
        #expect(code == 0, "\(text)")
        for (name, bytes) in zip(outputs, first) {
            #expect(ClusterFixture.bytes(group.directory + "/second/" + name) == bytes, "\(name) differs")
        }
        #expect(
            ClusterFixture.bytes(group.directory + "/second/img.npy")
                == ClusterFixture.bytes(group.directory + "/first/img.npy"), "the maps differ")
        let log = group.log("coordinator").split(separator: "\n")
        #expect(log.filter { $0.contains("no room in the store for the job's outputs") }.count == 1, "\(log)")
        #expect(log.contains { $0.contains("the job's outputs are written: the store has room again") }, "\(log)")
    }

    /// Audit 55: an upload job was admitted whatever its size; one whose image or map could not fit in the
    /// store filled the disk and then waited for good.
    @Test(
        "An upload whose image or map cannot fit in the store's free space is refused at once, saying both sizes",
        .enabled(if: available, "needs root, unshare and nsenter to mount a small tmpfs in a mount namespace"))
    func uploadTooLargeForStore() throws {
        let group = try ProcessGroup("disk-full-admission")
        defer { group.stop() }
        let disk = try TmpfsCoordinator(group, size: "6m")
        let (workers, clients) = try disk.startCoordinator("coordinator")
        try group.startWorker(workers, name: "w1")
        let flags =
            ClusterFixture.modelFlags + ["--mode", "dense", "--outputs", "npy", "--out", group.directory + "/out"]
        // Its image (6.75 MB) does not fit: refused before a byte is sent.
        let huge = group.directory + "/huge.png"
        try ClusterFixture.writeImage(to: huge, height: 1500, width: 1500)
        var (code, text) = try disk.client(["submit"] + flags + [huge], clients, log: "submit-huge")
        #expect(code != 0, "\(text)")
        #expect(
            text.contains("the 1500×1500 image needs 6750000 bytes on the coordinator's store")
                && text.contains("free: submit it again once other jobs' results are fetched"),
            "\(text)")
        // Its image (3 MB) fits, its map (3 classes × 1000² float32: 11 MiB and more, edge chunks padded) does not: refused once planned.
        let large = group.directory + "/large.png"
        try ClusterFixture.writeImage(to: large, height: 1000, width: 1000)
        (code, text) = try disk.client(["submit"] + flags + [large], clients, log: "submit-large")
        #expect(code != 0, "\(text)")
        #expect(
            text.contains("MiB on the coordinator's store (3 classes × 1000×1000 float32")
                && text.contains("keep fewer classes (--keep-classes)"),
            "\(text)")
        // Nothing of either is left, and a job that fits is mapped (the second took an id: its client was told it
        // with its first part).
        let (_, listing) = try disk.shell("ls -A \"$0/store/jobs\"")
        #expect(listing.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "left in the store: \(listing)")
        let small = group.directory + "/small.png"
        try ClusterFixture.writeImage(to: small, height: 200, width: 200)
        (code, text) = try disk.client(
            ["submit", "--wait"] + flags + [small], clients, log: "submit-small")
        #expect(code == 0 && text.contains("job 2 \(small)"), "\(text)")
        let metrics = group.log("coordinator")
        #expect(metrics.contains("image large: its map needs"), "\(metrics)")
    }

    /// Review 33: the room check compared each job with the free space alone, so two uploads that each fit were
    /// both admitted, filled the disk together, and neither could finish.
    @Test(
        "An upload that fits alone but not beside what the jobs under way have still to write is refused",
        .enabled(if: available, "needs root, unshare and nsenter to mount a small tmpfs in a mount namespace"))
    func uploadsTogetherTooLarge() throws {
        let group = try ProcessGroup("disk-full-reserved")
        defer { group.stop() }
        let disk = try TmpfsCoordinator(group, size: "6m")
        // No worker: job 1 stays under way with its whole map still to write.
        let (_, clients) = try disk.startCoordinator("coordinator")
        let flags =
            ClusterFixture.modelFlags + ["--mode", "dense", "--outputs", "npy", "--out", group.directory + "/out"]
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 500, width: 500)  // 0.75 MB raw, a 3 MiB map
        var (code, text) = try disk.client(["submit"] + flags + [image], clients, log: "submit-1")
        #expect(code == 0 && text.contains("job 1 "), "\(text)")
        (code, text) = try disk.client(["submit"] + flags + [image], clients, log: "submit-2")
        #expect(code != 0, "\(text)")
        #expect(
            text.contains("its map needs") && text.contains("beside what the jobs under way have still to write there"),
            "\(text)")
        // Once job 1 is cancelled, the same image fits.
        (code, text) = try disk.client(["cancel", "1"], clients, log: "cancel-1")
        #expect(code == 0, "\(text)")
        (code, text) = try disk.client(["submit"] + flags + [image], clients, log: "submit-3")
        #expect(code == 0 && text.contains("job 3 "), "\(text)")
    }
}
