import CLISupport
import Foundation
import Testing

@testable import CoordinatorService
@testable import TesseraImage
@testable import TestSupport

/// Output options that cannot work are refused before any tile is computed.
@Suite("Early checks of output options")
struct EarlyChecksTests {
    @Test(
        "--classes and --overlay-class outside the net, and an --out that cannot be a folder, fail before mapping",
        arguments: [["--classes", "9"], ["--overlay-class", "3"], ["--out-under-file"]])
    func refusedBeforeMapping(extra: [String]) throws {
        let group = try ProcessGroup("early")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 50)
        let blocker = group.directory + "/a-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let out = extra == ["--out-under-file"] ? blocker + "/out" : group.directory + "/out"
        let flags = extra == ["--out-under-file"] ? [] : extra
        for command in ["run", "submit"] {
            let (s, l) = try SlideMapTests.coordinator(
                group, [command] + ClusterFixture.modelFlags + flags + ["--out", out, image], log: "\(command)\(extra)")
            #expect(s != 0, "\(command) \(extra) was accepted: \(l)")
            let expected = extra == ["--out-under-file"] ? "a-file is a file, not a folder" : "the net has 3 classes"
            #expect(l.contains(expected), "\(command) \(extra): \(l)")
            #expect(!l.contains("mapping") && !l.contains("submitted"), "\(command) \(extra) started work: \(l)")
            // A refused run leaves no empty --out behind (user review).
            if command == "run" && extra != ["--out-under-file"] {
                #expect(!FileManager.default.fileExists(atPath: out), "run \(extra) left \(out)")
            }
            // An --out that is a file is called one (user audit: "cannot create the folder").
            if extra == ["--out-under-file"] {
                let (s2, l2) = try SlideMapTests.coordinator(
                    group, [command] + ClusterFixture.modelFlags + ["--out", blocker, image], log: "\(command)-file")
                #expect(s2 != 0 && l2.contains("--out \(blocker): a file, not a folder"), "\(command): \(l2)")
            }
        }
    }

    /// Two inputs of one stem wrote the same outputs, the second silently replacing the first.
    @Test("run and submit refuse two images with the same stem, naming both")
    func sameStemRefused() throws {
        let group = try ProcessGroup("same-stem")
        defer { group.stop() }
        try FileManager.default.createDirectory(atPath: group.directory + "/b", withIntermediateDirectories: true)
        let (a, b) = (group.directory + "/img.png", group.directory + "/b/img.png")
        try ClusterFixture.writeImage(to: a, height: 40, width: 50)
        try ClusterFixture.writeImage(to: b, height: 40, width: 50)
        for command in ["run", "submit"] {
            let (s, l) = try SlideMapTests.coordinator(
                group, [command] + ClusterFixture.modelFlags + ["--out", group.directory + "/out", a, b],
                log: "\(command)-stem")
            #expect(s != 0 && l.contains("\(a) and \(b) would both write img.*"), "\(command): \(l)")
        }
    }

    /// A --worker-binary that is there but cannot run is called what it is (paths audit 41 F9: "no tessera-worker").
    @Test("run --worker-binary: a missing program, a file without execute permission and a folder each say so")
    func workerBinaryChecks() throws {
        let group = try ProcessGroup("worker-binary")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 50)
        let plain = group.directory + "/plain"
        try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: plain))
        for (binary, expected) in [
            (group.directory + "/none", "no tessera-worker at \(group.directory)/none"),
            (plain, "\(plain) is not executable (chmod +x it)"),
            (group.directory, "\(group.directory) is a folder, not the tessera-worker program"),
        ] {
            let (s, l) = try SlideMapTests.coordinator(
                group,
                ["run", "--check", "0"] + ClusterFixture.modelFlags + [
                    "--worker-binary", binary, "--out", group.directory + "/o", image,
                ],
                log: "binary-\((binary as NSString).lastPathComponent)")
            #expect(s != 0 && l.contains(expected), "\(binary): \(l)")
        }
    }

    /// The embedded workers' shared roots are the images' folders; the coordinator reads
    /// an image at its link's target, which was outside them ("outside --shared-root").
    @Test("run maps an image given through a symbolic link in another folder")
    func symlinkedImage() throws {
        let group = try ProcessGroup("symlink")
        defer { group.stop() }
        let real = group.directory + "/data/img.png"
        try FileManager.default.createDirectory(atPath: group.directory + "/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: group.directory + "/links", withIntermediateDirectories: true)
        try ClusterFixture.writeImage(to: real, height: 40, width: 50)
        let link = group.directory + "/links/img.png"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let (s, l) = try SlideMapTests.coordinator(
            group,
            ["run"] + ClusterFixture.modelFlags + [
                "--check", "0", "--outputs", "npy", "--out", group.directory + "/out", link,
            ],
            log: "run-link")
        #expect(s == 0 && l.contains("embedded coordinator"), "\(l)")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/out/img.npy"), "\(l)")
    }

    /// Found by a user audit: 16-bit samples entered preprocessing as 0–65535 with no
    /// word, and the help said 0–255; and with --dtype uint8 and zarr, the .npy was the
    /// quantised map although it promises float32, with no word either.
    @Test("16-bit images warn about --raw-scale; a quantised zarr with a .npy is announced")
    func sixteenBitAndQuantisedNPY() throws {
        let group = try ProcessGroup("sixteen")
        defer { group.stop() }
        let image = group.directory + "/deep.png"
        var state: UInt64 = 5
        let samples = (0..<(30 * 40)).map { _ -> UInt16 in
            state = state &* 6_364_136_223_846_793_005 &+ 1
            return UInt16(truncatingIfNeeded: state >> 48)
        }
        try writePNG(PixelImage(width: 40, height: 30, channels: 1, samples: .uint16(samples)), to: image)
        let out = group.directory + "/out"
        for (extra, warns) in [([String](), true), (["--raw-scale", "0.00389105"], false)] {
            let (s, l) = try SlideMapTests.coordinator(
                group, ["run"] + ClusterFixture.modelFlags + extra + ["--outputs", "npy", "--out", out, image],
                log: "run-16-\(warns)")
            #expect(s == 0, "\(l)")
            #expect(l.contains("has 16-bit samples") == warns, "\(extra): \(l)")
        }
        let (s, l) = try SlideMapTests.coordinator(
            group,
            ["run"] + ClusterFixture.modelFlags + ["--dtype", "uint8", "--outputs", "zarr,npy", "--out", out, image],
            log: "run-npy")
        #expect(s == 0 && l.contains("the .npy holds the uint8 zarr's quantised values"), "\(l)")
    }

    /// The hidden (partial or temporary) entries of `out`.
    static func partials(_ out: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.hasPrefix(".") }
    }

    /// Sends `signal` to `p` once a partial output appears in `out` (up to 60 s); whether one appeared.
    static func interruptWhileWriting(_ p: Process, out: String, signal: Int32 = SIGINT) -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while partials(out).isEmpty && p.isRunning && Date() < deadline { usleep(50_000) }
        let appeared = !partials(out).isEmpty
        kill(p.processIdentifier, signal)
        return appeared
    }

    /// An interrupted run left its partial stores in --out (and the embedded
    /// coordinator's in /tmp) on every try; now it leaves what a failed run leaves. SIGHUP (a closed
    /// terminal or ssh session) left a hidden partial map (slide audit F14).
    @Test(
        "run stopped by SIGINT or SIGHUP removes its unfinished outputs and exits 130 or 129",
        arguments: [(false, SIGINT), (true, SIGINT), (false, SIGHUP)])
    func interruptedRunLeavesNothing(inProcess: Bool, signal: Int32) throws {
        // A test process started under nohup passes SIGHUP ignored on: run must then keep running.
        if signal == SIGHUP && signalIsIgnored(SIGHUP) { return }
        let group = try ProcessGroup("interrupt")
        defer { group.stop() }
        let image = group.directory + "/big.png"
        try ClusterFixture.writeImage(to: image, height: 2400, width: 2400)
        let out = group.directory + "/out"
        let demo = TestPaths.packageRoot.appendingPathComponent("models/demo").path
        let p = try group.start(
            "tessera-coordinator",
            [
                "run", "--model", demo + "/deploy.prototxt", "--weights", demo + "/nuclei32.caffemodel", "--outputs",
                "zarr,npy", "--tile", "256", "--out", out, image,
            ] + (inProcess ? ["--in-process"] : []),
            log: "run")
        #expect(
            Self.interruptWhileWriting(p, out: out, signal: signal), "no partial store appeared: \(group.log("run"))")
        #expect(group.wait(p, timeout: 30) == (signal == SIGHUP ? 129 : 130), "\(group.log("run"))")
        #expect(Self.partials(out).isEmpty, "left behind: \(Self.partials(out))")
        // Under load the job may have finished before the handler ran: then its map is whole.
        if FileManager.default.fileExists(atPath: out + "/big.zarr") {
            #expect(try MapStore.open(at: out + "/big.zarr").isFinished, "a map left unfinished")
        }
    }

    /// Two runs of one image into one --out both computed it, and the last silently replaced the first;
    /// an interrupted run removed every unfinished output of its image, another live run's too (user
    /// audit F18). A coordinator's partial map (base-36 token) was read as a pid's ("99999999abc").
    @Test(
        "A second run of an image another run is writing into the same --out is refused; an interruption removes only its own outputs"
    )
    func concurrentRunsRefused() throws {
        let group = try ProcessGroup("concurrent")
        defer { group.stop() }
        let image = group.directory + "/big.png"
        try ClusterFixture.writeImage(to: image, height: 2400, width: 2400)
        let out = group.directory + "/out"
        let demo = TestPaths.packageRoot.appendingPathComponent("models/demo").path
        let model = ["--model", demo + "/deploy.prototxt", "--weights", demo + "/nuclei32.caffemodel", "--tile", "256"]
        let first = try group.start(
            "tessera-coordinator", ["run"] + model + ["--outputs", "zarr,npy", "--out", out, image], log: "first")
        let deadline = Date().addingTimeInterval(60)
        while Self.partials(out).isEmpty && first.isRunning && Date() < deadline { usleep(50_000) }
        try #require(!Self.partials(out).isEmpty, "no partial appeared: \(group.log("first"))")
        for (log, extra) in [("second", [String]()), ("second-in-process", ["--in-process"])] {
            let (s, l) = try SlideMapTests.coordinator(
                group, ["run"] + model + extra + ["--outputs", "npy", "--out", out, image], log: log)
            // Refused by `run`'s own check ("is writing the outputs of"), or, when the first run's outputs were
            // not begun yet, by the coordinator's ("is writing the map of"): both name the image and --out.
            let refused = ["outputs", "map"].contains { l.contains("is writing the \($0) of \(image) in \(out) now") }
            #expect(s != 0 && refused, "\(log): \(l)")
        }
        // Another live process's temporary file, and a live coordinator's partial whose token starts with
        // digits (it was read as pid 99999999, absent, so "stale").
        let others = [".big.npy.tmp-\(getpid())-7", ".big.zarr.partial-99999999abc"]
        _ = FileManager.default.createFile(atPath: out + "/" + others[0], contents: Data())
        try FileManager.default.createDirectory(atPath: out + "/" + others[1], withIntermediateDirectories: true)
        try Data("host=h\nstore=/elsewhere\n".utf8).write(
            to: URL(fileURLWithPath: out + "/" + others[1] + "/tessera-owner.txt"))
        let lock = try #require(PartialLock(out + "/" + others[1]))
        defer { lock.release() }
        kill(first.processIdentifier, SIGINT)
        #expect(group.wait(first, timeout: 30) == 130, "\(group.log("first"))")
        #expect(Set(Self.partials(out)) == Set(others), "left: \(Self.partials(out))")
        #expect(PartialOutputs.writerPID(".big.zarr.partial-99999999abc") == nil)
        #expect(PartialOutputs.writerPID(".big.zarr.partial-123") == 123)
        #expect(PartialOutputs.writerPID(".big.npy.tmp-45-678") == 45)
    }

    /// Messages a user audit found wanting, each now naming the problem.
    @Test("Clear messages: an endpoint without tcp://, a port in use, an unknown job, an empty image, --mpp on a PNG")
    func clearMessages() throws {
        let group = try ProcessGroup("messages")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator()
        func coordinator(_ arguments: [String], _ log: String) throws -> (Int32, String) {
            try SlideMapTests.coordinator(group, arguments, log: log)
        }
        var (s, l) = try coordinator(["status", "--coordinator", "127.0.0.1:5555", "1"], "no-scheme")
        #expect(s != 0 && l.contains("an endpoint looks like tcp://HOST:PORT"), "\(l)")
        (s, l) = try coordinator(
            ["serve", "--worker-endpoint", workers, "--client-endpoint", "tcp://127.0.0.1:*"], "in-use")
        #expect(s != 0 && l.contains("cannot listen on \(workers): Address already in use"), "\(l)")
        (s, l) = try coordinator(["status", "--coordinator", clients, "99"], "unknown-job")
        #expect(s != 0 && l.contains("no job 99"), "\(l)")
        let empty = group.directory + "/empty.png"
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        (s, l) = try coordinator(
            ["run"] + ClusterFixture.modelFlags + ["--out", group.directory + "/o", empty], "empty")
        #expect(s != 0 && l.contains("the file is empty (0 bytes)"), "\(l)")
        let png = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: png, height: 20, width: 20)
        (s, l) = try coordinator(
            ["run"] + ClusterFixture.modelFlags + ["--mpp", "0.5", "--out", group.directory + "/o", png], "mpp")
        #expect(s != 0 && l.contains("a PNG records no microns per pixel"), "\(l)")
        // A command's own ValidationError (thrown once parsed) was followed by the top-level usage.
        (s, l) = try coordinator(["export", group.directory + "/map.zarr", "--out", group.directory + "/e"], "export")
        #expect(
            s == 64 && l.contains("Error: give --outputs") && l.contains("See 'tessera-coordinator export --help'")
                && !l.contains("<subcommand>"), "\(l)")
    }

    /// A run killed with -9 (or a lost machine) left its `.STEM.zarr.partial-*` map in
    /// --out for good (a user audit); the next job of that output removes the partials
    /// nothing can resume, and only those.
    @Test("orphaned partial maps: removed when their coordinator's store is gone; others are kept")
    func orphanedPartialsRemoved() throws {
        let group = try ProcessGroup("orphans")
        defer { group.stop() }
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 70)
        let out = group.directory + "/out"
        let host = ProcessInfo.processInfo.hostName
        func partial(_ token: String, owner: String?) throws -> String {
            let path = "\(out)/.tissue.zarr.partial-\(token)"
            try FileManager.default.createDirectory(atPath: path + "/0", withIntermediateDirectories: true)
            if let owner {
                try Data(owner.utf8).write(to: URL(fileURLWithPath: path + "/tessera-owner.txt"))
            }
            return path
        }
        let orphan = try partial("gone", owner: "host=\(host)\nstore=\(group.directory)/no-such-store\n")
        let resumable = try partial("kept", owner: "host=\(host)\nstore=\(group.directory)\n")
        let otherHost = try partial("other", owner: "host=not-\(host)\nstore=/no/such/store\n")
        let unmarked = try partial("old", owner: nil)
        // A live coordinator whose store this process cannot see (a private /tmp) holds its lock.
        let locked = try partial("live", owner: "host=\(host)\nstore=\(group.directory)/private-tmp-store\n")
        let lock = try #require(PartialLock(locked))
        defer { lock.release() }
        let otherStem = try partial("x", owner: "host=\(host)\nstore=\(group.directory)/gone\n")
        let renamed = otherStem.replacingOccurrences(of: ".tissue.zarr.", with: ".tissue.ome.zarr.")
        try FileManager.default.moveItem(atPath: otherStem, toPath: renamed)  // another image's partial
        let arguments =
            ["run"] + ClusterFixture.modelFlags + ["--check", "0", "--outputs", "zarr", "--out", out, image]
        // While that coordinator writes the map, another run of it is refused, and nothing is removed.
        var (s, l) = try SlideMapTests.coordinator(group, arguments, log: "refused")
        #expect(s != 0 && l.contains("a coordinator (.tissue.zarr.partial-live) is writing the outputs"), "\(l)")
        for kept in [orphan, resumable, otherHost, unmarked, locked, renamed] {
            #expect(FileManager.default.fileExists(atPath: kept), "\(kept) was removed")
        }
        // Once it stops (its store unseen here, so gone), its partial is an orphan too.
        lock.release()
        (s, l) = try SlideMapTests.coordinator(group, arguments, log: "run")
        #expect(s == 0, "\(l)")
        for removed in [orphan, locked] {
            #expect(!FileManager.default.fileExists(atPath: removed), "the orphaned partial \(removed) is still there")
        }
        for kept in [resumable, otherHost, unmarked, renamed] {
            #expect(FileManager.default.fileExists(atPath: kept), "\(kept) was removed")
        }
        #expect(try MapStore.open(at: out + "/tissue.zarr").isFinished)
        // The finished map names only the submitting key (none here: no CURVE), in its .zattrs: the record
        // file made zarr-python warn on every open (slide audit F15).
        #expect(MapStore.submittedBy(out + "/tissue.zarr") == "anonymous")
        #expect(!FileManager.default.fileExists(atPath: out + "/tissue.zarr/tessera-owner.txt"))
    }

    /// run --store after an interruption resumed the old job in the background and also
    /// mapped the image again as a new job (a user audit); now the same command is the
    /// same job: it resumes, and the map equals an uninterrupted one.
    @Test("run --store: the same command after an interruption resumes the job instead of mapping it twice")
    func storeResumesInterruptedRun() throws {
        let group = try ProcessGroup("store-resume")
        defer { group.stop() }
        let image = group.directory + "/big.png"
        try ClusterFixture.writeImage(to: image, height: 2400, width: 2400)
        let demo = TestPaths.packageRoot.appendingPathComponent("models/demo").path
        let model = ["--model", demo + "/deploy.prototxt", "--weights", demo + "/nuclei32.caffemodel", "--tile", "256"]
        let store = group.directory + "/store", out = group.directory + "/out"
        let first = try group.start(
            "tessera-coordinator", ["run"] + model + ["--outputs", "zarr,npy", "--store", store, "--out", out, image],
            log: "first")
        // Interrupted once a tile is journalled: the job is under way, not still being prepared.
        let journal = store + "/jobs/1/receipts.log"
        let begun = Date().addingTimeInterval(60)
        while ((try? FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int) ?? 0) == 0
            && first.isRunning && Date() < begun
        {
            usleep(20_000)
        }
        kill(first.processIdentifier, SIGINT)
        #expect(group.wait(first, timeout: 30) == 130, "\(group.log("first"))")
        // Another command on that store and output: refused, saying the interrupted job is
        // there and how to finish or drop it (it said to wait for a job that never ends).
        let (c, changed) = try SlideMapTests.coordinator(
            group,
            ["run"] + model + ["--outputs", "zarr,npy", "--dtype", "uint8", "--store", store, "--out", out, image],
            log: "changed")
        #expect(
            c != 0 && changed.contains("restored from the store after an interruption")
                && changed.contains("run the command that began it again"), "\(changed)")
        let (s, l) = try SlideMapTests.coordinator(
            group, ["run"] + model + ["--outputs", "zarr,npy", "--store", store, "--out", out, image], log: "second")
        #expect(s == 0, "\(l)")
        // Said at the start, or (when the refused run's coordinator finished the restored job
        // while it stopped) in the final line.
        #expect(
            l.contains("job 1: resumed: ") || l.contains("note=resumed: "),
            "the resumed job says what it took from the store: \(l)")
        let jobs = (try? FileManager.default.contentsOfDirectory(atPath: store + "/jobs"))?.filter { Int($0) != nil }
        #expect(jobs == ["1"], "one job, resumed: \(jobs ?? [])")
        let (t, m) = try SlideMapTests.coordinator(
            group, ["run", "--in-process"] + model + ["--outputs", "npy", "--out", group.directory + "/ref", image],
            log: "reference")
        #expect(t == 0, "\(m)")
        #expect(
            FileManager.default.contents(atPath: out + "/big.npy")
                == FileManager.default.contents(atPath: group.directory + "/ref/big.npy"),
            "the resumed map differs from an uninterrupted one")
    }
}

extension EarlyChecksTests {
    /// Found by an operator audit: a misspelt coordinator host cost the whole 60 s
    /// --reconnect-timeout, reported as "may be restarting".
    @Test("A client whose coordinator host does not resolve fails at once, naming the host")
    func unresolvableHostFailsAtOnce() throws {
        let host = "no-such-host.invalid"
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, nil, &result)
        if let result { freeaddrinfo(result) }
        // Only where the resolver answers "no such name" (not where DNS is unreachable).
        guard status == EAI_NONAME || status == EAI_FAIL else { return }
        let start = Date()
        let (code, text) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "status", "--coordinator", "tcp://\(host):5556",
        ])
        #expect(code != 0 && text.contains("cannot resolve the host '\(host)'"), "\(text)")
        #expect(Date().timeIntervalSince(start) < 10, "took \(Date().timeIntervalSince(start)) s")
    }
}

extension EarlyChecksTests {
    /// Found by a user audit: convert did not make its output folder and its error named no
    /// path; a folder given as the model read "NSCocoaErrorDomain error 256".
    @Test("convert makes its output folder; a folder given as the model is named as one")
    func convertFolders() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let out = dir.path + "/new/sub/fcn.onnx"
        let (code, text) = try runCommand(
            [ProcessGroup.binary("tessera-coordinator"), "convert", "--format", "onnx", "--out-model", out]
                + ClusterFixture.modelFlags.prefix(4))
        #expect(code == 0 && FileManager.default.fileExists(atPath: out), "\(text)")
        // Without --format, an --out-model ending in .onnx is one (user review: a prototxt was written into it).
        let implied = dir.path + "/implied.onnx"
        let (code1, text1) = try runCommand(
            [ProcessGroup.binary("tessera-coordinator"), "convert", "--out-model", implied]
                + ClusterFixture.modelFlags.prefix(4))
        #expect(code1 == 0, "\(text1)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: implied)) == Data(contentsOf: URL(fileURLWithPath: out)))
        // An --out-model that is a folder is called one (user review: "NSCocoaErrorDomain error 512").
        let (code3, text3) = try runCommand(
            [ProcessGroup.binary("tessera-coordinator"), "convert", "--format", "onnx", "--out-model", dir.path]
                + ClusterFixture.modelFlags.prefix(4))
        #expect(code3 != 0 && text3.contains("\(dir.path): a folder"), "\(text3)")
        let (code2, text2) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "inspect", "--model", dir.path,
        ])
        #expect(code2 != 0 && text2.contains("\(dir.path): ") && text2.contains("this is a folder"), "\(text2)")
    }
}

extension EarlyChecksTests {
    /// Found by an operator audit: a client pointed at the worker endpoint said "unexpected
    /// reply to a status request".
    @Test("A client pointed at the worker endpoint is told it is one")
    func clientAtWorkerEndpoint() throws {
        let group = try ProcessGroup("wrong-port")
        defer { group.stop() }
        let (workers, _) = try group.startCoordinator()
        let (code, text) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "status", "--coordinator", workers, "--reconnect-timeout", "5",
        ])
        #expect(code != 0 && text.contains("is a coordinator's worker endpoint"), "\(text)")
    }
}

extension EarlyChecksTests {
    /// Caffe audit: a training net's preprocessing (its data layer's transform_param mean_value and scale)
    /// was ignored, `inspect` said "mean: none", and the map was off by up to 0.6 from Caffe's.
    @Test(
        "A Caffe data layer's transform_param mean and scale are used when no option gives values; options win, with a warning"
    )
    func declaredPreprocessing() throws {
        let group = try ProcessGroup("transform-param")
        defer { group.stop() }
        let deploy = try String(contentsOfFile: ClusterFixture.prototxt, encoding: .utf8)
        let header = deploy.range(of: "layer {")!
        let data = """
            name: "conv_pool_ip_train"
            layer {
              name: "data" type: "Data" top: "data" top: "label"
              transform_param { crop_size: 18 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.0078125 }
              data_param { source: "train_lmdb" batch_size: 16 }
            }

            """
        let trainVal = group.directory + "/train_val.prototxt"
        try (data + deploy[header.lowerBound...]).write(toFile: trainVal, atomically: true, encoding: .utf8)
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 20, width: 24)
        let weights = ["--weights", ClusterFixture.weights]
        var (s, l) = try SlideMapTests.coordinator(group, ["inspect", "--model", trainVal] + weights, log: "inspect")
        #expect(
            s == 0 && l.contains("mean: [104.0000, 117.0000, 123.0000] subtracted (from the model's data layer")
                && l.contains("scale: 0.0078125"), "\(l)")
        func run(_ model: String, _ extra: [String], _ out: String) throws -> (Int32, String) {
            try SlideMapTests.coordinator(
                group,
                ["run", "--model", model] + weights + extra + [
                    "--mode", "naive", "--in-process", "--outputs", "npy", "--out", group.directory + "/" + out, image,
                ], log: out)
        }
        (s, l) = try run(trainVal, [], "declared")
        #expect(s == 0 && l.contains("preprocessing from the model's data layer"), "\(l)")
        (s, l) = try run(ClusterFixture.prototxt, ["--mean", "104,117,123", "--scale", "0.0078125"], "given")
        #expect(s == 0, "\(l)")
        let declared = SlideMapTests.bytes(group.directory + "/declared/img.npy")
        #expect(declared != nil && declared == SlideMapTests.bytes(group.directory + "/given/img.npy"))
        (s, l) = try run(trainVal, ["--mean", "1,2,3"], "other")
        #expect(s == 0 && l.contains("the model's data layer preprocessed with mean 104.0,117.0,123.0"), "\(l)")
        #expect(declared != SlideMapTests.bytes(group.directory + "/other/img.npy"))
    }
}

extension EarlyChecksTests {
    /// Docs/CLI audit 36 F16: `run --store` was ignored without a word when the run mapped in this process:
    /// `--in-process`, `--check N`, and by default every net that is not exact, whose runs then could not resume.
    @Test("run --store: refused beside --in-process and --check N; a net that is not exact maps through the store")
    func storeWithANetThatIsNotExact() throws {
        let group = try ProcessGroup("store-padded")
        defer { group.stop() }
        let image = group.directory + "/small.png"
        try ClusterFixture.writeImage(to: image, height: 50, width: 60)
        let net = TestPaths.fixtures.appendingPathComponent("padded_partial_pool").path
        let model = [
            "--model", net + "/deploy.prototxt", "--weights", net + "/weights.caffemodel", "--allow-padding",
            "--outputs", "npy",
        ]
        // What a killed run left (whole-slide audit 35 F6): a half-written TIFF of a process no longer running goes.
        let out = group.directory + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let stale = out + "/.small.map.tiff.tmp-4194303-17"
        #expect(FileManager.default.createFile(atPath: stale, contents: Data(count: 100)))
        let store = group.directory + "/store"
        for extra in [["--in-process"], ["--check", "16"]] {
            let (status, log) = try SlideMapTests.coordinator(
                group, ["run"] + model + extra + ["--store", store, "--out", group.directory + "/refused", image],
                log: "refused-\(extra[0])")
            #expect(status == 64 && log.contains("--store"), "\(extra): \(log)")
        }
        let (s, l) = try SlideMapTests.coordinator(
            group, ["run"] + model + ["--store", store, "--out", group.directory + "/out", image], log: "stored")
        #expect(s == 0 && l.contains("the map is not checked: --store"), "\(l)")
        #expect(!FileManager.default.fileExists(atPath: stale) && l.contains(".small.map.tiff.tmp-4194303-17"), "\(l)")
        #expect(FileManager.default.fileExists(atPath: store + "/jobs/1"), "\(l)")
        let (t, m) = try SlideMapTests.coordinator(
            group, ["run", "--in-process", "--check", "0"] + model + ["--out", group.directory + "/ref", image],
            log: "reference")
        #expect(t == 0, "\(m)")
        #expect(
            FileManager.default.contents(atPath: group.directory + "/out/small.npy")
                == FileManager.default.contents(atPath: group.directory + "/ref/small.npy"))
    }
}

extension EarlyChecksTests {
    /// Whole-slide audit 35 F9: a net's error caused by an absurd image size named a layer, not the image.
    @Test("A net's refusal of an absurdly sized image names the image")
    func netErrorNamesTheImage() throws {
        let group = try ProcessGroup("wide-image")
        defer { group.stop() }
        let image = group.directory + "/wide.tif"
        // A 2³¹−1 × 16 tiled TIFF whose first tile holds data (the others none).
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import struct, sys
            W, H, tw, th = 2**31 - 1, 16, 65536, 16
            n = -(-W // tw)
            tile = bytes([200]) * (tw * th * 3)
            with open(sys.argv[1], 'wb') as f:
                f.write(b'II*\\\\x00' + struct.pack('<I', 0))
                first = f.tell(); f.write(tile)
                offsets = f.tell(); f.write(struct.pack('<I', first) + bytes(4 * (n - 1)))
                counts = f.tell(); f.write(struct.pack('<I', len(tile)) + bytes(4 * (n - 1)))
                bps = f.tell(); f.write(struct.pack('<3H', 8, 8, 8))
                ifd = f.tell()
                tags = [(256, 4, 1, W), (257, 4, 1, H), (258, 3, 3, bps), (259, 3, 1, 1), (262, 3, 1, 2),
                        (277, 3, 1, 3), (284, 3, 1, 1), (322, 4, 1, tw), (323, 4, 1, th), (324, 4, n, offsets),
                        (325, 4, n, counts)]
                f.write(struct.pack('<H', len(tags)))
                for code, kind, count, value in tags:
                    if kind == 3 and count == 1: f.write(struct.pack('<HHIHH', code, kind, count, value, 0))
                    else: f.write(struct.pack('<HHII', code, kind, count, value))
                f.write(struct.pack('<I', 0))
                f.seek(4); f.write(struct.pack('<I', ifd))
            """, image,
        ])
        #expect(status == 0, "\(output)")
        let demo = TestPaths.packageRoot.appendingPathComponent("models/demo").path
        let (s, l) = try SlideMapTests.coordinator(
            group,
            [
                "run", "--model", demo + "/deploy.prototxt", "--weights", demo + "/nuclei32.caffemodel",
                "--outputs", "zarr", "--out", group.directory + "/out", image,
            ], log: "wide")
        #expect(s == 1 && l.contains("Error: \(image): "), "\(l)")
    }
}
