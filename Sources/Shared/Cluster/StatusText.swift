import TesseraWire

/// The words `status` uses for a job, shared by the coordinator (the plain reply's
/// listing, which clients of earlier builds print as it is) and the client.
package enum StatusText {
    /// The state as it reads to an operator: an active job no worker can run says so.
    package static func state(_ j: Wire.JobSummary) -> String {
        j.waitingForWorkers ? "waiting for workers" : "\(j.state)"
    }

    /// One line of a listing: "job 3: running 24/64 tasks, ihc", "job 1: done, ihc [alice]"
    /// (the owner when `owner`), "job 5: queued (receiving the image: 40% of 3.2 MB), big".
    package static func jobLine(_ j: Wire.JobSummary, owner: Bool) -> String {
        let who = owner && !j.owner.isEmpty ? " [\(j.owner)]" : ""
        let name = j.image.isEmpty ? "" : ", \(j.image)"
        guard j.state == .queued || j.state == .running else { return "job \(j.id): \(j.state)\(name)\(who)" }
        if j.tasks == 0 && !j.message.isEmpty { return "job \(j.id): \(state(j)) (\(j.message))\(name)\(who)" }
        return "job \(j.id): \(state(j)) \(j.done)/\(j.tasks) tasks\(name)\(who)"
    }
}
