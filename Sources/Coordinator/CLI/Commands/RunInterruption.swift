import CLISupport
import CoordinatorService
import Foundation
import TesseraImage

/// What `run` undoes when SIGINT, SIGTERM or SIGHUP stops it: the embedded workers and
/// coordinator are stopped (which removes the coordinator's temporary store); the
/// main thread, whose mapping then fails (or, in-process, stops at its next tile),
/// parks; then this run's unfinished outputs in `--out` are removed (`.STEM.….partial-…`
/// stores and `.STEM.….tmp-…` files) and the process exits 130 (SIGINT), 143 or 129, so an
/// interrupted run leaves what a failed one leaves: nothing (a map finished before
/// the signal stays whole). With `--store` the partial stores stay, for the job to resume.
final class RunInterruption: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: [() -> Void] = []
    private var interrupted = false
    /// Signalled when the main thread has stopped writing (`parkIfInterrupted`).
    private let mainStopped = DispatchSemaphore(value: 0)
    /// In-process mapping: the main thread writes the map itself, so the handler waits
    /// for it to stop (embedded, the stopped workers were the writers).
    private var mainWrites = false
    private var sources: [DispatchSourceSignal] = []
    /// What an interruption now should also say (a finished map that stays, and how to finish its outputs).
    private var note: String?

    /// Installs the handlers; `removeOutputs`: whether partial stores go too.
    init(out: String, images: [String], image: Int, removeOutputs: Bool, message: String? = nil) {
        let stems = images.map { OutputOptions.stem(forInput: $0, image: image) }
        // SIGHUP: the terminal or ssh session closed (a hidden partial map stayed); not where the
        // process was started with it ignored (nohup), which must keep it running.
        var signals = [(SIGINT, Int32(130)), (SIGTERM, Int32(143))]
        if !signalIsIgnored(SIGHUP) { signals.append((SIGHUP, 129)) }
        for (signal, status) in signals {
            Foundation.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { [self] in
                let text =
                    message.map { $0 + "\n" }
                    ?? (removeOutputs
                        ? "interrupted: stopping the workers and removing this run's unfinished outputs\n"
                        : "interrupted: stopping the workers; the unfinished map stays for the same command "
                            + "to resume (--store)\n")
                // write(2), not FileHandle: after SIGHUP the terminal may be gone (EIO), which must not trap.
                let (steps, waits, note) = lock.withLock {
                    interrupted = true
                    return (self.steps, mainWrites, self.note)
                }
                let said = text + (note.map { $0 + "\n" } ?? "")
                _ = said.withCString { write(2, $0, strlen($0)) }
                for step in steps.reversed() { step() }
                // Nothing is removed while the main thread may still write (30 s at most).
                if waits { _ = mainStopped.wait(timeout: .now() + 30) }
                if removeOutputs { Self.removeTemporaries(in: out, stems: stems) }
                exit(status)
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Blocks for good if an interruption is being handled (its handler exits), so a
    /// mapping that fails because the handler stopped the workers does not exit first.
    func parkIfInterrupted() {
        guard isInterrupted else { return }
        mainStopped.signal()
        while true { sleep(60) }
    }

    /// What an interruption from now on also says (nil: nothing more).
    func setNote(_ text: String?) { lock.withLock { note = text } }

    /// The main thread maps in this process: an interruption waits for it to stop.
    func mainThreadWrites() { lock.withLock { mainWrites = true } }

    /// Whether a signal came: the in-process mapping stops at its next tile.
    var isInterrupted: Bool { lock.withLock { interrupted } }

    /// Runs `step` on interruption (before the steps added earlier), to stop what writes.
    func add(_ step: @escaping () -> Void) { lock.withLock { steps.append(step) } }

    /// Removes the unfinished outputs of `stems` in `out` that processes no longer running left
    /// (killed by SIGKILL or a power loss: `.NAME.partial-PID-…`, `.NAME.tmp-PID-…`), and returns their
    /// names; those of running processes (another export, a run) stay. A finished tile store
    /// (`.STEM.chunks.tmp-PID-…`) goes only with `finishedStores`: one of a `run --store` is its done job's map,
    /// which the same command writes its outputs from (review 33: it was swept, and every tile computed again).
    static func removeStaleTemporaries(in out: String, stems: [String], finishedStores: Bool) -> [String] {
        var removed: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        where stems.contains(where: { name.hasPrefix(".\($0).") })
            && (finishedStores || !name.contains(".chunks.tmp-"))
        {
            // A coordinator's partial map has no pid: `PartialOutputs.removeOrphans` judges those.
            guard let pid = PartialOutputs.writerPID(name), pid != getpid(), !PartialOutputs.isRunning(pid) else {
                continue
            }
            if (try? FileManager.default.removeItem(atPath: out + "/" + name)) != nil { removed.append(name) }
        }
        return removed
    }

    /// Removes this run's unfinished outputs of `stems` in `out`: its own (its pid in the name) and the
    /// partial maps of its stopped coordinator (no longer locked); not those of another live run or
    /// coordinator writing the same image there (they were removed too).
    /// Also the finished tile store an embedded job leaves for the outputs to be written from
    /// (`.STEM.chunks.tmp-PID-JOB-RANDOM`; verification audit 37 N3: Ctrl-C while they were written left it, the
    /// size of the float map).
    static func removeTemporaries(in out: String, stems: [String]) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        where stems.contains(where: { name.hasPrefix(".\($0).") })
            && (name.contains(".partial-") || name.contains(".tmp-"))
        {
            let path = out + "/" + name
            if let pid = PartialOutputs.writerPID(name) {
                guard pid == getpid() || !PartialOutputs.isRunning(pid) else { continue }
            } else if PartialOutputs.isHeld(path) {
                continue
            }
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
