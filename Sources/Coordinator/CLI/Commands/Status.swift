import ArgumentParser
import Foundation
import TesseraCluster
import TesseraWire

/// `tessera-coordinator status [JOB]`.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a job's state, or the cluster's (workers, tasks) and your jobs.",
        discussion: "Without a job id: the workers, the active jobs' tasks and rate, your jobs counted by state, "
            + "and one line per job of your key (every active one and the last 10 ended; --all: every one; "
            + "--state, --owner: those in a state, of a key). An admin key sees every key's jobs, each with its "
            + "owner. A rate is measured over the last 30 s: it falls to 0 when nothing completes.\n\n"
            + "With a job id: its state, tasks, image, owner, submit and end times, rate and outputs.\n\n"
            + "--json prints one JSON object instead (its fields: README, \"status --json\").\n\n"
            + "Exit status with a job id: 0 queued, running or done; 2 failed; 3 cancelled; "
            + "1 no such job (or removed by retention) or no answer.")

    /// A job state `--state` names.
    enum StateName: String, ExpressibleByArgument, CaseIterable {
        case queued, running, done, failed, cancelled
        var state: Wire.JobState {
            switch self {
            case .queued: .queued
            case .running: .running
            case .done: .done
            case .failed: .failed
            case .cancelled: .cancelled
            }
        }
    }

    @OptionGroup var endpoint: CoordinatorOption
    @Flag(help: "Print one JSON object (stable keys, documented in the README).") var json = false
    @Flag(help: "List every job you may see, not only the active ones and the last 10 ended.") var all = false
    @Option(
        help: ArgumentHelp(
            "List only the jobs in this state (repeat for several): queued, running, done, failed, cancelled.",
            valueName: "state"))
    var state: [StateName] = []
    @Option(
        help: ArgumentHelp(
            "List only the jobs submitted with this key (a user key sees only its own in any case).",
            valueName: "key"))
    var owner: String?
    @Argument(help: "Job id (default: the whole cluster and your jobs).") var job: UInt64?

    func validate() throws {
        if job != nil, all || !state.isEmpty || owner != nil {
            throw ValidationError(
                "--all, --state and --owner choose the jobs the cluster's status lists: give no job id")
        }
    }

    var query: Wire.StatusQuery {
        Wire.StatusQuery(states: Wire.StatusQuery.mask(state.map(\.state)), allEnded: all, owner: owner ?? "")
    }

    func run() throws {
        let client = try endpoint.connect(try ZMQContext())
        let s: Wire.JobStatus
        do {
            s = try client.status(job, query: query)
        } catch let error as ClusterError where json && job != nil && error.kind == .refused {
            // A script reading --json gets JSON for a refusal too (another key's job), and exit 1.
            print(Self.refusalJSON(job: job!, error.description))
            throw ExitCode(1)
        }
        if s.details == nil, json || all || !state.isEmpty || owner != nil {
            throw ClusterError(
                .refused,
                "the coordinator at \(endpoint.coordinator) is an earlier build, which answers no detailed status: "
                    + "--json, --all, --state and --owner need one of this build")
        }
        if json {
            print(Self.json(s))
        } else if let job, s.state == .unknown {
            // As cancel and fetch do: a script checking the exit status learns the id is wrong.
            throw ClusterError("no job \(job) on this coordinator\(s.message.isEmpty ? "" : ": \(s.message)")")
        } else {
            print(Self.describe(s))
        }
        // A script watching a job learns how it ended from the exit status.
        if job != nil, s.state == .unknown { throw ExitCode(1) }
        if job != nil, s.state == .failed { throw ExitCode(2) }
        if job != nil, s.state == .cancelled { throw ExitCode(3) }
    }
}
