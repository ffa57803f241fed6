import Foundation
import TesseraImage

/// What `run` undoes when SIGINT or SIGTERM stops it: the embedded workers and
/// coordinator are stopped (which removes the coordinator's temporary store), then
/// this run's unfinished outputs in `--out` are removed (`.STEM.….partial-…` stores
/// and `.STEM.….tmp-…` files), so an interrupted run leaves what a failed one leaves:
/// nothing. With `--store` the partial stores stay, for the job to resume.
final class RunInterruption: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: [() -> Void] = []
    private var interrupted = false
    private var sources: [DispatchSourceSignal] = []

    /// Installs the handlers; `removeOutputs`: whether partial stores go too.
    init(out: String, images: [String], removeOutputs: Bool) {
        let stems = images.map { OutputOptions.stem(forInput: $0) }
        if removeOutputs { add { Self.removeTemporaries(in: out, stems: stems) } }
        for (signal, status) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            Foundation.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { [self] in
                FileHandle.standardError.write(
                    Data("interrupted: stopping the workers and removing this run's unfinished outputs\n".utf8))
                let steps = lock.withLock {
                    interrupted = true
                    return self.steps
                }
                for step in steps.reversed() { step() }
                exit(status)
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Blocks for good if an interruption is being handled (its handler exits), so a
    /// mapping that fails because the handler stopped the workers does not exit first.
    func parkIfInterrupted() {
        guard lock.withLock({ interrupted }) else { return }
        while true { sleep(60) }
    }

    /// Runs `step` on interruption, before the steps added earlier.
    func add(_ step: @escaping () -> Void) { lock.withLock { steps.append(step) } }

    static func removeTemporaries(in out: String, stems: [String]) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        where stems.contains(where: { name.hasPrefix(".\($0).") })
            && (name.contains(".partial-") || name.contains(".tmp-"))
        {
            try? FileManager.default.removeItem(atPath: out + "/" + name)
        }
    }
}
