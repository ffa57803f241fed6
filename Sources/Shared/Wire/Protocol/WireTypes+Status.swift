/// The detailed status (`statusRequest` flags bit 1): what the client asks the listing
/// for, and the per-job and per-worker records the coordinator answers with. Added
/// within wire protocol 3: a plain request (bit 1 clear) gets the reply it always got,
/// so clients and coordinators of earlier builds of the release keep their behaviour.
extension Wire {
    /// Which jobs a detailed cluster status lists (a job's status ignores it).
    package struct StatusQuery: Equatable, Sendable {
        /// The ended jobs a listing shows when it asks for neither every job nor a state.
        package static let recentEnded = 10
        /// Bit n lists the jobs in `JobState(rawValue: n)` (queued … cancelled); 0: every state.
        package var states: UInt8
        /// Every ended job the asker may see, not only the last `recentEnded`.
        package var allEnded: Bool
        /// Only the jobs of this key ("": every key the asker may see).
        package var owner: String

        package init(states: UInt8 = 0, allEnded: Bool = false, owner: String = "") {
            self.states = states; self.allEnded = allEnded; self.owner = owner
        }

        /// The state mask of `states`.
        package static func mask(_ states: [JobState]) -> UInt8 {
            states.reduce(0) { $0 | 1 << $1.rawValue }
        }

        /// Whether the listing has every job that matches (a state filter lists them all).
        package var listsAll: Bool { allEnded || states != 0 }

        /// Whether a job in `state` of `owner` matches (the asker's right to see it is checked apart).
        package func matches(_ state: JobState, owner jobOwner: String?) -> Bool {
            (states == 0 || states & (1 << state.rawValue) != 0) && (owner.isEmpty || owner == (jobOwner ?? ""))
        }
    }

    /// One job in a detailed status.
    package struct JobSummary: Equatable, Sendable {
        package var id: UInt64
        package var state: JobState
        /// The image's name without its extension: the outputs are named after it.
        package var image: String
        /// The key that submitted it ("" without CURVE).
        package var owner: String
        package var tasks: UInt64
        package var queued: UInt64, running: UInt64, done: UInt64, failed: UInt64
        /// Workers holding its tasks now.
        package var workers: UInt32
        /// Active: over the coordinator's rate window; ended: its average over its run
        /// in this coordinator's life (0 when it ended before a restart).
        package var tasksPerSecond: Double, pixelsPerSecond: Double
        /// Unix seconds; 0: not known (or not ended).
        package var submitted: Double, ended: Double
        /// Active, and no worker is connected to run its tasks.
        package var waitingForWorkers: Bool
        package var message: String

        package init(
            id: UInt64, state: JobState, image: String = "", owner: String = "", tasks: UInt64 = 0,
            queued: UInt64 = 0, running: UInt64 = 0, done: UInt64 = 0, failed: UInt64 = 0, workers: UInt32 = 0,
            tasksPerSecond: Double = 0, pixelsPerSecond: Double = 0, submitted: Double = 0, ended: Double = 0,
            waitingForWorkers: Bool = false, message: String = ""
        ) {
            self.id = id; self.state = state; self.image = image; self.owner = owner; self.tasks = tasks
            self.queued = queued; self.running = running; self.done = done; self.failed = failed
            self.workers = workers; self.tasksPerSecond = tasksPerSecond; self.pixelsPerSecond = pixelsPerSecond
            self.submitted = submitted; self.ended = ended; self.waitingForWorkers = waitingForWorkers
            self.message = message
        }
    }

    /// One registered worker in a detailed cluster status.
    package struct WorkerSummary: Equatable, Sendable {
        package var name: String
        package var threads: UInt32
        package var inFlight: UInt32
        package var tasksDone: UInt64
        package init(name: String, threads: UInt32, inFlight: UInt32 = 0, tasksDone: UInt64 = 0) {
            self.name = name; self.threads = threads; self.inFlight = inFlight; self.tasksDone = tasksDone
        }
    }

    /// What a detailed status adds to `JobStatus`. A job's status: `jobs` holds that
    /// job alone, the rest is empty. The cluster's: the listed jobs, the workers, and
    /// the counts the listing is taken from.
    package struct StatusDetails: Equatable, Sendable {
        package var jobs: [JobSummary]
        package var workers: [WorkerSummary]
        /// The jobs the asker may see, by state: queued, running, done, failed, cancelled.
        package var jobCounts: [UInt64]
        /// Jobs that matched the query: more than `jobs.count` when the listing was cut
        /// to the last ended ones (or at the wire's list limit).
        package var matched: UInt64
        /// Active jobs of every key: the cluster's load.
        package var activeJobs: UInt64
        /// The seconds an active job's and the cluster's rates are measured over.
        package var rateWindowSeconds: Double

        package init(
            jobs: [JobSummary] = [], workers: [WorkerSummary] = [], jobCounts: [UInt64] = [0, 0, 0, 0, 0],
            matched: UInt64 = 0, activeJobs: UInt64 = 0, rateWindowSeconds: Double = 0
        ) {
            self.jobs = jobs; self.workers = workers; self.jobCounts = jobCounts; self.matched = matched
            self.activeJobs = activeJobs; self.rateWindowSeconds = rateWindowSeconds
        }

        /// The states `jobCounts` counts, in its order.
        package static let countedStates: [JobState] = [.queued, .running, .done, .failed, .cancelled]
    }
}
