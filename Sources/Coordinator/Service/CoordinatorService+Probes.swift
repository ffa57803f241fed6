import Foundation

/// What `/readyz` asks of the coordinator beyond "endpoints bound": a store it can write.
extension CoordinatorService {
    package var storeReadiness: (ready: Bool, detail: String) {
        guard let folder = jobsFolder.withLock({ $0 }) else { return (false, "the store is not prepared yet") }
        guard access(folder, W_OK) == 0 else {
            // No path: the probe answers unauthenticated HTTP clients (security audit).
            return (false, "the store (--store) is not writable: \(String(cString: strerror(errno)))")
        }
        return (true, "endpoints bound, store writable")
    }
}
