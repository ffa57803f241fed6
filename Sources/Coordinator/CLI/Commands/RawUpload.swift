import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// How `submit` sends an upload job's image: decoded here, band by band, as the raw
/// samples the coordinator's tasks read (`JobOptions.rawImage`). The submission
/// announces the shape (so the coordinator admits or refuses the job before any pixel
/// travels); the samples follow in parts of at most `partBytes`, each answered before
/// the next is sent. No message holds the whole image, the coordinator never decodes
/// it, and the client's memory holds one band.
enum RawUpload {
    static let partBytes = 16 << 20

    /// Submits `spec` (its image a PNG at `path`) and uploads the image; returns the job id. `warn` gets
    /// what libpng warned of the image data (from the decoding thread). A coordinator that no longer holds
    /// the upload (it restarted while receiving it: its uploads are in memory) gets the image again, from
    /// the submission on, up to twice (chaos audit: `submit` exited 1, "submit the image again").
    static func submit(
        _ spec: Wire.JobSpec, options: JobOptions, png path: String, client: ClusterClient,
        progress: Progress? = nil, warn: @escaping @Sendable (String) -> Void = { _ in }
    ) throws -> UInt64 {
        var tries = 0
        while true {
            tries += 1
            do {
                return try submitOnce(spec, options: options, png: path, client: client, progress: progress, warn: warn)
            } catch let error as ClusterError where tries < 3 && error.description.contains(Wire.noUploadInProgress) {
                Logger(label: "tessera.client").warning(
                    "the coordinator no longer holds this upload (did it restart?): submitting the image again",
                    metadata: ["image": "\(path)", "reason": "\(error)"])
            }
        }
    }

    private static func submitOnce(
        _ spec: Wire.JobSpec, options: JobOptions, png path: String, client: ClusterClient,
        progress: Progress?, warn: @escaping @Sendable (String) -> Void
    ) throws -> UInt64 {
        let header = try PNGReader.header(path: path, maxPixels: Int.max)
        var options = options
        let shape = RawImageShape(
            height: header.height, width: header.width, channels: header.channels, bitDepth: header.bitDepth)
        options.rawImage = shape
        guard let total = shape.byteCount else { throw ClusterError("\(path): the image is too large") }
        var announce = spec
        announce.outputOptions = options.encoded
        announce.image = .inline(name: (path as NSString).lastPathComponent, bytes: [])
        guard
            case .submitted(let id) = try client.request(
                .submit(announce), timeout: 3600, attemptTimeout: 60, slowReply: Submit.preparing)
        else {
            throw ClusterError(.protocolViolation, "unexpected reply to submit")
        }
        var offset = 0
        var answer: UInt64?
        let (since, label) = (Date(), (path as NSString).lastPathComponent)
        // A thread decodes the next band while this one sends the last and waits for its answer.
        let bands = BandQueue(capacity: 2)
        Thread.detachNewThread {
            do {
                _ = try PNGReader.readBands(path: path, maxPixels: Int.max, bandBytes: partBytes, warn: warn) {
                    band in
                    guard bands.put(band) else { throw ClusterError("upload stopped") }
                }
                bands.finish(nil)
            } catch {
                bands.finish(error)
            }
        }
        defer { bands.cancel() }
        do {
            try send(
                bands, id: id, total: total, client: client, progress: progress, label: label, since: since,
                offset: &offset, answer: &answer)
        } catch {
            // Decoding or sending failed: the coordinator need not wait for the rest.
            _ = try? client.request(.cancel(jobID: id), timeout: 5, attemptTimeout: 5)
            throw error
        }
        progress?.finish()
        guard let answer, offset == total else {
            throw ClusterError("\(path): decoded \(offset) bytes, the image has \(total)")
        }
        return answer
    }

    private static func send(
        _ bands: BandQueue, id: UInt64, total: Int, client: ClusterClient, progress: Progress?, label: String,
        since: Date, offset: inout Int, answer: inout UInt64?
    ) throws {
        while let band = try bands.take() {
            let last = offset + band.count == total
            let crc = band.withUnsafeBytes { CRC32.update(0, $0) }
            let part = Wire.UploadPart(jobID: id, offset: UInt64(offset), crc32: crc, last: last, bytes: band)
            // The last part is answered once the job is prepared: waited for as a submission is (review: it kept
            // the old give-up path).
            let reply: WireMessage
            do {
                reply = try client.request(
                    .uploadPart(part), timeout: last ? 3600 : 600, attemptTimeout: last ? 300 : 60,
                    slowReply: last ? Submit.preparing : nil)
            } catch let error as ClusterError where last && error.description.contains(Wire.noUploadInProgress) {
                // A last part sent again (its answer was lost with the connection) after the coordinator took
                // it: the job exists, and is the answer.
                guard let status = try? client.status(id), [.queued, .running, .done].contains(status.state) else {
                    throw error
                }
                reply = .submitted(jobID: id)
            }
            switch reply {
            case .uploadAck(let job, let received) where job == id && received == UInt64(offset + band.count):
                break
            case .submitted(let job) where last && job == id:
                answer = job
            case let other:
                throw ClusterError(.protocolViolation, "unexpected reply to an upload part: \(other.type)")
            }
            offset += band.count
            progress?.transfer(label: label, done: offset, total: total, since: since)
        }
    }
}

/// Decoded bands between the decoding thread and the sending one, at most `capacity` waiting.
private final class BandQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var bands: [[UInt8]] = []
    private var done = false
    private var failure: (any Error)?
    private var cancelled = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Adds a band, waiting while the queue is full; false once the sender has given up.
    func put(_ band: [UInt8]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while bands.count >= capacity && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        bands.append(band)
        condition.broadcast()
        return true
    }

    /// The decoder is done (or failed).
    func finish(_ error: (any Error)?) {
        condition.lock()
        (done, failure) = (true, error)
        condition.broadcast()
        condition.unlock()
    }

    /// The sender stops: a waiting decoder returns.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next band, nil after the last; rethrows the decoder's error.
    func take() throws -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        while bands.isEmpty && !done { condition.wait() }
        if !bands.isEmpty {
            condition.broadcast()
            return bands.removeFirst()
        }
        if let failure { throw failure }
        return nil
    }
}
