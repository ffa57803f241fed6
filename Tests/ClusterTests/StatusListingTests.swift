import Foundation
import Logging
import TesseraCluster
import Testing

@testable import CoordinatorService
@testable import TesseraWire
@testable import TestSupport

/// The cluster's status after a restart (operator audit F9): ended jobs keep their
/// image name and times, the counts agree with the listing, and a query chooses the
/// jobs listed.
@Suite("Status listing: restart, counts, queries")
struct StatusListingTests {
    @Test("After a restart ended jobs keep their image name and times; the counts agree with the listing")
    func listingAfterRestart() throws {
        let scratch = try DamagedStoreTests.Scratch("listing", height: 40, width: 50)
        defer { scratch.remove() }
        let context = try ZMQContext()
        func start() throws -> (CoordinatorService, String) {
            let id = UUID().uuidString
            let service = CoordinatorService(
                context: context,
                configuration: .init(
                    workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)",
                    storeDirectory: scratch.root),
                logger: Logger(label: "test.listing"))
            _ = try service.start()
            return (service, "inproc://c-\(id)")
        }
        let jobs = 13
        do {  // No workers: every job stays unfinished.
            let (service, endpoint) = try start()
            defer { service.stop() }
            let client = try TestClient(context, endpoint)
            for i in 1...jobs {
                let reply = try client.request(.submit(DamagedStoreTests.spec("img-\(i).png", image: scratch.image)))
                #expect(reply == .submitted(jobID: UInt64(i)), "\(reply)")
            }
        }
        // Jobs 2…13 ended while the coordinator was down: 3 failed, 4 cancelled, the others done.
        let store = JobStore(root: scratch.root)
        for id in 2...UInt64(jobs) {
            let state: Wire.JobState = id == 3 ? .failed : id == 4 ? .cancelled : .done
            try store.writeEnding(
                JobEnding(state: state, message: id == 3 ? "task 0 failed 3 times" : "", tasks: 6, files: []), id)
        }

        let (service, endpoint) = try start()
        defer { service.stop() }
        let client = try TestClient(context, endpoint)
        func details(_ query: Wire.StatusQuery, job: UInt64? = nil) throws -> Wire.StatusDetails {
            guard case .status(let s) = try client.request(.statusRequest(jobID: job, query: query)),
                let d = s.details
            else { throw ClusterError("no detailed status") }
            return d
        }
        let d = try details(Wire.StatusQuery())
        // The active job and the last 10 ended (4…13); 2 and 3 are counted, not listed.
        #expect(d.jobs.map(\.id) == [1] + Array(4...13), "\(d.jobs.map(\.id))")
        #expect(d.matched == UInt64(jobs))
        // Job 1 is queued: no worker has taken a task of it.
        #expect(d.jobCounts == [1, 0, 10, 1, 1], "queued, running, done, failed, cancelled: \(d.jobCounts)")
        #expect(d.jobCounts.reduce(0, +) == UInt64(jobs), "the counts cover every job the listing is taken from")
        #expect(d.activeJobs == 1)
        for j in d.jobs {
            #expect(j.image == "img-\(j.id)", "job \(j.id) is named \(j.image.debugDescription)")
            #expect(j.submitted > 1_700_000_000, "job \(j.id) submitted at \(j.submitted)")
            if j.id > 1 {
                #expect(j.ended >= j.submitted, "job \(j.id) ended at \(j.ended), submitted at \(j.submitted)")
            } else {
                #expect(j.ended == 0 && j.tasks == 6 && j.queued == 6, "\(j)")
            }
        }
        #expect(d.jobs.first { $0.id == 13 }?.done == 6)

        #expect(try details(Wire.StatusQuery(allEnded: true)).jobs.map(\.id) == Array(1...UInt64(jobs)))
        let failed = try details(Wire.StatusQuery(states: Wire.StatusQuery.mask([.failed])))
        #expect(failed.jobs.map(\.id) == [3] && failed.matched == 1)
        #expect(failed.jobs.first?.message == "task 0 failed 3 times" && failed.jobs.first?.image == "img-3")
        let active = try details(Wire.StatusQuery(states: Wire.StatusQuery.mask([.queued, .running])))
        #expect(active.jobs.map(\.id) == [1])
        #expect(try details(Wire.StatusQuery(allEnded: true, owner: "alice")).jobs.isEmpty)

        let three = try details(Wire.StatusQuery(), job: 3)
        #expect(three.jobs.count == 1 && three.jobs.first?.image == "img-3" && three.jobs.first?.state == .failed)
        #expect(three.workers.isEmpty, "a job's status holds nothing cluster-wide")

        // The plain reply (a client of an earlier build) names the images and counts every job too.
        let plain = try client.status(nil)
        #expect(plain.details == nil)
        #expect(plain.message.hasPrefix("1 active job(s) of 13;"), "\(plain.message)")
        #expect(plain.message.contains("\njob 13: done, img-13"), "\(plain.message)")
        #expect(plain.message.contains("\njob 1: waiting for workers 0/6 tasks, img-1"), "\(plain.message)")
    }

    /// Docs/CLI audit 36 F17: a submission refused while prepared used up its id, and `status` of
    /// that id then said there was no such job.
    @Test("A submission refused while it is prepared takes no job id")
    func refusedSubmissionTakesNoID() throws {
        let scratch = try DamagedStoreTests.Scratch("refused-id", height: 30, width: 30)
        defer { scratch.remove() }
        let context = try ZMQContext()
        let id = UUID().uuidString
        let service = CoordinatorService(
            context: context,
            configuration: .init(
                workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: scratch.root),
            logger: Logger(label: "test.refused-id"))
        _ = try service.start()
        defer { service.stop() }
        let client = try TestClient(context, "inproc://c-\(id)")
        var bad = DamagedStoreTests.spec("bad.png", image: scratch.image)
        bad.prototxt = .inline(name: "deploy.prototxt", bytes: Array("layer { name: 'x' type: 'Nope' }".utf8))
        for _ in 0..<2 {
            let refused = try client.request(.submit(bad))
            guard case .error(let message) = refused else {
                Issue.record("a net with an unknown layer was accepted: \(refused)")
                return
            }
            #expect(message.contains("Nope"), "\(message)")
        }
        let good = try client.request(.submit(DamagedStoreTests.spec("good.png", image: scratch.image)))
        #expect(good == .submitted(jobID: 1), "\(good)")
    }
}
