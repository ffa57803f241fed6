import Dispatch
import Foundation

/// SIGTERM, SIGINT and SIGHUP call `stop` (on a global queue) instead of killing the
/// process, so a service can hand back or persist its work first. SIGHUP is a closed
/// terminal, which killed `serve` and workers started there with `&` without a clean stop
/// (operator audit 38 F8); where it is ignored (`nohup`, a service manager) it stays so, and
/// the process keeps running. Keep the returned sources alive for as long as the handlers
/// should stay installed.
package func onStopSignals(_ stop: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
    (signalIsIgnored(SIGHUP) ? [SIGTERM, SIGINT] : [SIGTERM, SIGINT, SIGHUP]).map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler(handler: stop)
        source.resume()
        return source
    }
}

/// Whether signal `number` is ignored now (inherited from `nohup` or a service manager): read by setting it
/// ignored and putting the old disposition back (portable, unlike glibc's `sigaction` fields).
package func signalIsIgnored(_ number: Int32) -> Bool {
    let previous = signal(number, SIG_IGN)
    signal(number, previous)
    return previous.map { unsafeBitCast($0, to: Int.self) } == 1  // SIG_IGN
}
