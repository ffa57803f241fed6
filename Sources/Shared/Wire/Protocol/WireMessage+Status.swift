/// The detailed status's fields (`Wire.StatusQuery`, `Wire.StatusDetails`), written
/// after a plain status request's or reply's when flags bit 1 is set; the decoders
/// read them in the order the writers write them.
extension WireMessage {
    static func write(_ q: Wire.StatusQuery, to w: inout WireWriter) {
        w.u8(q.states); w.u8(q.allEnded ? 1 : 0); w.string(q.owner)
    }

    static func write(_ d: Wire.StatusDetails, to w: inout WireWriter) {
        let jobs = d.jobs.prefix(Int(UInt32.max))
        w.u32(UInt32(jobs.count))
        for j in jobs {
            w.u64(j.id); w.u8(j.state.rawValue); w.string(j.image); w.string(j.owner)
            w.u64(j.tasks); w.u64(j.queued); w.u64(j.running); w.u64(j.done); w.u64(j.failed)
            w.u32(j.workers); w.f64(j.tasksPerSecond); w.f64(j.pixelsPerSecond)
            w.f64(j.submitted); w.f64(j.ended); w.u8(j.waitingForWorkers ? 1 : 0); w.string(j.message)
        }
        let workers = d.workers.prefix(Int(UInt32.max))
        w.u32(UInt32(workers.count))
        for k in workers { w.string(k.name); w.u32(k.threads); w.u32(k.inFlight); w.u64(k.tasksDone) }
        for i in 0..<Wire.StatusDetails.countedStates.count { w.u64(i < d.jobCounts.count ? d.jobCounts[i] : 0) }
        w.u64(d.matched); w.u64(d.activeJobs); w.f64(d.rateWindowSeconds)
    }

    static func statusQuery(_ r: inout WireReader) throws -> Wire.StatusQuery {
        let states = try r.u8("state mask")
        let known = Wire.StatusQuery.mask(Wire.StatusDetails.countedStates)
        guard states & ~known == 0 else { throw r.error(.invalidValue, "state mask 0x\(String(states, radix: 16))") }
        let list = try r.u8("list flags")
        guard list <= 1 else { throw r.error(.invalidValue, "list flags \(list)") }
        return Wire.StatusQuery(states: states, allEnded: list == 1, owner: try r.string("owner"))
    }

    /// Bytes of a job's and a worker's record with empty strings: counts are checked
    /// against the bytes left before anything is reserved.
    private static let smallestJob = 8 + 1 + 2 + 2 + 5 * 8 + 4 + 4 * 8 + 1 + 2
    private static let smallestWorker = 2 + 4 + 4 + 8

    static func statusDetails(_ r: inout WireReader, _ limits: WireLimits) throws -> Wire.StatusDetails {
        var d = Wire.StatusDetails()
        let jobCount = try listCount(&r, "jobs", smallest: smallestJob, limits)
        d.jobs.reserveCapacity(jobCount)
        for i in 0..<jobCount {
            let id = try r.u64("job \(i) id")
            let stateByte = try r.u8("job \(i) state")
            guard let state = Wire.JobState(rawValue: stateByte) else {
                throw r.error(.invalidValue, "job \(i) state \(stateByte)")
            }
            var j = Wire.JobSummary(id: id, state: state)
            j.image = try r.string("job \(i) image")
            j.owner = try r.string("job \(i) owner")
            j.tasks = try r.u64("job \(i) tasks")
            j.queued = try r.u64("job \(i) queued")
            j.running = try r.u64("job \(i) running")
            j.done = try r.u64("job \(i) done")
            j.failed = try r.u64("job \(i) failed")
            j.workers = try r.u32("job \(i) workers")
            j.tasksPerSecond = try r.nonNegativeF64("job \(i) tasks per second")
            j.pixelsPerSecond = try r.nonNegativeF64("job \(i) pixels per second")
            j.submitted = try r.nonNegativeF64("job \(i) submitted")
            j.ended = try r.nonNegativeF64("job \(i) ended")
            let flags = try r.u8("job \(i) flags")
            guard flags <= 1 else { throw r.error(.invalidValue, "job \(i) flags \(flags)") }
            j.waitingForWorkers = flags == 1
            j.message = try r.string("job \(i) message")
            d.jobs.append(j)
        }
        let workerCount = try listCount(&r, "workers", smallest: smallestWorker, limits)
        d.workers.reserveCapacity(workerCount)
        for i in 0..<workerCount {
            d.workers.append(
                Wire.WorkerSummary(
                    name: try r.string("worker \(i) name"), threads: try r.u32("worker \(i) threads"),
                    inFlight: try r.u32("worker \(i) in flight"), tasksDone: try r.u64("worker \(i) done")))
        }
        d.jobCounts = try Wire.StatusDetails.countedStates.map { try r.u64("\($0) jobs") }
        d.matched = try r.u64("matched jobs")
        d.activeJobs = try r.u64("active jobs")
        d.rateWindowSeconds = try r.nonNegativeF64("rate window")
        return d
    }

    /// A list's count: within the limit, and not more records than the bytes left can hold.
    private static func listCount(
        _ r: inout WireReader, _ what: String, smallest: Int, _ limits: WireLimits
    ) throws -> Int {
        let count = Int(try r.u32("\(what) count"))
        guard count <= limits.maxListCount else {
            throw r.error(.limitExceeded, "\(count) \(what), limit \(limits.maxListCount)")
        }
        guard count * smallest <= r.bytes.count - r.offset else {
            throw r.error(.truncated, "header ends inside the \(what)")
        }
        return count
    }
}
