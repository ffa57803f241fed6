import Dispatch
import Foundation

/// SIGTERM and SIGINT call `stop` (on a global queue) instead of killing the
/// process, so a service can hand back or persist its work first. Keep the
/// returned sources alive for as long as the handlers should stay installed.
package func onStopSignals(_ stop: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
    [SIGTERM, SIGINT].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler(handler: stop)
        source.resume()
        return source
    }
}
