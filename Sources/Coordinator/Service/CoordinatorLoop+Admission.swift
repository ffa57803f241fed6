import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// Why a submission was refused before anything was stored or decoded.
struct AdmissionRefusal: Error, CustomStringConvertible {
    /// The refusals metric's label.
    let reason: String
    let description: String

    /// A `store-full` refusal when `need` bytes (`what`, in words; `detail`: of what) do not fit in the store's free
    /// space `disk` less what the upload jobs under way have still to write there (`reserved`); nil when they fit.
    /// `remedy`: a way out of its own, said before the general ones.
    static func storeFull(
        _ what: String, detail: String? = nil, need: UInt64, disk: UInt64, reserved: UInt64, remedy: String = ""
    ) -> AdmissionRefusal? {
        let free = disk > reserved ? disk - reserved : 0
        guard need > free else { return nil }
        let (needText, freeText) = OutputSpace.texts(need, free)
        return AdmissionRefusal(
            reason: "store-full",
            description:
                "\(what) needs \(needText) on the coordinator's store\(detail.map { " (\($0))" } ?? ""), and that disk has "
                + "\(freeText) free" + (reserved > 0 ? " beside what the jobs under way have still to write there" : "")
                + ": submit it again once other jobs' results are fetched and removed (serve --keep-finished, "
                + "--max-store), \(remedy)or give the store more room")
    }
}

/// Admission: what a submission may ask of this coordinator, checked from the
/// request alone (an image's header, never its pixels) before the job is stored.
extension CoordinatorLoop {
    func admit(_ spec: Wire.JobSpec) throws {
        let limit = configuration.maxPixels
        let name: String
        let size: (width: Int, height: Int)?
        if let shape = (try? JobOptions(encoded: spec.outputOptions))?.rawImage {
            guard case .inline(_, let bytes) = spec.image, bytes.isEmpty else {
                throw ClusterError(
                    .invalidOption, "a raw-image upload sends its pixels in parts, not in the submission")
            }
            name = JobFactory.name(of: spec.image)
            size = (shape.width, shape.height)
        } else {
            (name, size) = try inlineOrLocal(spec)
        }
        // Not a PNG (or no readable header): decoding reports why.
        guard let size else { return }
        let pixels = size.width.multipliedReportingOverflow(by: size.height)
        if pixels.overflow || pixels.partialValue > limit {
            throw AdmissionRefusal(
                reason: "too-many-pixels",
                description:
                    "image \(name) is \(size.width)×\(size.height) = \(pixels.overflow ? "too many" : "\(pixels.partialValue)") pixels, over this coordinator's limit of \(limit) (serve --max-pixels)"
            )
        }
    }

    /// Refuses a new job of `owner` when that key already has `maxJobsPerKey`
    /// unfinished jobs (uploading, being prepared, queued or running). Admin keys are exempt.
    func admitJobCount(_ owner: String?) throws {
        try admitTotalJobCount(owner)
        let limit = configuration.maxJobsPerKey
        guard limit > 0, !CoordinatorService.isAdmin(owner) else { return }
        let key = owner ?? "anonymous"
        var unfinished = Set(jobs.values.filter { $0.isActive && ($0.owner ?? "anonymous") == key }.map(\.id))
        unfinished.formUnion(uploads.values.filter { ($0.owner ?? "anonymous") == key }.map(\.id))
        unfinished.formUnion(preparingOwners.filter { $0.value == key }.map(\.key))
        guard unfinished.count >= limit else { return }
        let who = key == "anonymous" ? "clients without a key (all share one limit)" : "key \(key)"
        throw AdmissionRefusal(
            reason: "too-many-jobs",
            description:
                "\(who) already \(key == "anonymous" ? "have" : "has") \(unfinished.count) unfinished job\(unfinished.count == 1 ? "" : "s") "
                + "(\(unfinished.sorted().map { "\($0)" }.joined(separator: ", "))), this coordinator's limit per key "
                + "(serve --max-jobs-per-key \(limit)): submit again when one has ended, or cancel one")
    }

    /// Refuses a new job when the coordinator already holds `maxJobs` unfinished ones, whoever's: many
    /// keys (or every client of a coordinator without CURVE) could queue without bound (operator audit
    /// F11). Admin keys are exempt.
    func admitTotalJobCount(_ owner: String?) throws {
        let limit = configuration.maxJobs
        guard limit > 0, !CoordinatorService.isAdmin(owner) else { return }
        let unfinished =
            jobs.values.filter(\.isActive).count + uploads.count
            + preparingOwners.keys.filter { jobs[$0] == nil && uploads[$0] == nil }.count
        guard unfinished >= limit else { return }
        throw AdmissionRefusal(
            reason: "queue-full",
            description:
                "this coordinator holds \(unfinished) unfinished jobs, its limit (serve --max-jobs \(limit)): submit "
                + "again when some have ended")
    }

    /// Refuses a raw-image upload before a byte is sent when the image alone cannot fit in the store's free space
    /// (its map is checked once the job is planned: `JobFactory.checkRoom`).
    func admitUploadRoom(_ shape: RawImageShape) throws {
        guard let total = shape.byteCount, let disk = freeBytes(store.root),
            let refusal = AdmissionRefusal.storeFull(
                "the \(shape.width)×\(shape.height) image", need: UInt64(total), disk: disk,
                reserved: reservedStoreBytes())
        else { return }
        throw refusal
    }

    /// What the upload jobs under way have still to write in the store (an estimate, not a reservation the disk
    /// keeps): the parts of uploads still arriving, and the map chunks of active jobs' tasks not yet done.
    func reservedStoreBytes() -> UInt64 {
        var total: UInt64 = 0
        for u in uploads.values { total += UInt64(max(0, u.total - u.received)) }
        for id in jobOrder {
            guard let job = jobs[id], job.isActive, let map = job.map, !job.tasks.isEmpty else { continue }
            let left = UInt64(job.tasks.count - min(job.done, job.tasks.count))
            total += map.store.layout.levelZeroBytes / UInt64(job.tasks.count) * left
        }
        return total
    }

    /// The name and size of a PNG sent whole or named by path (nil size: no readable header).
    private func inlineOrLocal(_ spec: Wire.JobSpec) throws -> (String, (width: Int, height: Int)?) {
        let name: String
        let size: (width: Int, height: Int)?
        switch spec.image {
        case .inline(let fileName, let bytes):
            name = fileName
            size = PNGReader.dimensions(of: bytes)
        case .path(let path) where configuration.allowLocalPaths:
            name = (path as NSString).lastPathComponent
            size = (try? PNGReader.header(path: path, maxPixels: Int.max)).map { ($0.width, $0.height) }
        case .path(let path):
            // Refused by createJob, with its reason.
            return ((path as NSString).lastPathComponent, nil)
        }
        return (name, size)
    }
}
